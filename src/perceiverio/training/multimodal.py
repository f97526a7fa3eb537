"""Lightning module of multimodal autoencoding (paper §4.3)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from .evaluation import EvaluatedTask, batch_value, require
from .metrics import RatioMetric, psnr


class MultimodalAutoencodingTask(EvaluatedTask):
    """Multimodal autoencoding (§4.3): video, audio and label through one latent array.

    Batch: ``{<modality name>: tensor}``: video ``[B, T, 3, H, W]``, audio ``[B, S, 1]`` (or ``[B, S]``), label
    one-hot ``[B, K]`` (or ids ``[B]``), names as in the model config. Each training step decodes
    ``train_points[name]`` random output points per example of each named modality (the paper: 512 video pixels and
    512 audio patches) and every point of the others (the label); the points come from a generator seeded by
    ``(seed, process rank, step, batch index)``, so runs and resumed runs draw the same points. Loss: the paper's
    ``0.03·L1(video) + L1(audio) + 1e-4·CE(label)`` (:meth:`MultimodalAutoencoder.loss`).

    Validation reconstructs every point (:meth:`MultimodalAutoencoder.reconstruct`) and logs ``val/loss`` (the same
    loss over all points), ``val/psnr_<name>`` for video/image and audio modalities (per-example PSNR with the
    data range ``max − min`` of that example's target, averaged over examples; constant targets are skipped) and
    ``val/acc_<name>`` for label modalities.
    """

    config_class, default_config = MultimodalAutoencoderConfig, MultimodalAutoencoderConfig.tiny

    def __init__(
        self,
        config: MultimodalAutoencoderConfig | None = None,
        *,
        train_points: dict[str, int] = {"image": 512, "audio": 512},  # noqa: B006 (never mutated; shown by --help)
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, train_points=dict(train_points), seed=seed, **kwargs)
        config = self.model_config
        self._setup_model(MultimodalAutoencoder(config))
        unknown = sorted(set(train_points) - set(self.model.modalities))
        if unknown or any(int(n) <= 0 for n in train_points.values()):
            raise ValueError(
                f"train_points must map modality names {self.model.modalities} to positive counts, "
                f"got {dict(train_points)}"
            )
        self.train_points = {k: int(v) for k, v in train_points.items()}
        self.seed = int(seed)
        self.kinds = config.kinds
        self.val_loss = RatioMetric()
        # lists in modality order (names need not be valid module names)
        self.val_metrics = nn.ModuleList(RatioMetric() for _ in self.model.modalities)

    def model_num_classes(self) -> int | None:
        """The size of the label modality (checked against the data module's ``num_classes``, the size of its
        one-hot labels); None without exactly one label modality."""
        sizes = [c.num_classes for n, c in self.model_config.modalities if self.kinds[n] == "label"]
        return sizes[0] if len(sizes) == 1 else None

    def _inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        return {name: require(batch, name, "multimodal") for name in self.model.modalities}

    def sample_points(self, batch_size: int, batch_idx: int = 0) -> dict[str, torch.Tensor | None]:
        """``{name: [B, n] random flat indices, or None (every point)}`` for one training step."""
        key = f"{self.seed}/{self.global_rank}/{self.global_step}/{batch_idx}".encode()
        generator = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
        points: dict[str, torch.Tensor | None] = {}
        for name in self.model.modalities:
            n, total = self.train_points.get(name), self.model.num_points(name)
            if n is None or n >= total:
                points[name] = None
            else:
                scores = torch.rand(batch_size, total, generator=generator)
                points[name] = scores.topk(n, dim=1).indices.to(self.device)
        return points

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = self._inputs(batch)
        b = next(iter(inputs.values())).shape[0]
        points = self.sample_points(b, batch_idx)
        outputs = self(inputs, points)
        result = self.model.loss(outputs, self.model.targets(inputs, points))
        self.log_train({"train/loss": result.loss, **{f"train/loss_{k}": v for k, v in result.terms.items()}}, b)
        return result.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs = self._inputs(batch)
        b = next(iter(inputs.values())).shape[0]
        recon = self.model.reconstruct(inputs)
        flat = {}
        for i, name in enumerate(self.model.modalities):
            y, t = recon[name], inputs[name]
            if self.kinds[name] == "label":
                flat[name] = y
                ids = t.argmax(-1) if t.dim() == 2 else t
                self.val_metrics[i].update((y.argmax(-1) == ids.to(y.device)).sum(), b)
                continue
            value, defined = psnr(y, t)
            self.val_metrics[i].update(value[defined].sum(), defined.sum())
            flat[name] = y.movedim(-3, -1).reshape(b, -1, y.shape[-3]) if self.kinds[name] == "image" else y
        self.val_loss.update(self.model.loss(flat, self.model.targets(inputs)).loss * b, b)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "reconstruction", "index" [B], "kinds": {name: kind}, "inputs": {name: tensor},
        "outputs": {name: tensor}}``: every modality reconstructed (:meth:`MultimodalAutoencoder.reconstruct`;
        videos ``[B, T, C, H, W]``, audio ``[B, S]``, label logits ``[B, K]``), inputs and outputs on the CPU."""
        inputs = self._inputs(batch)
        recon = self.model.reconstruct(inputs)
        return {
            "kind": "reconstruction",
            "index": batch_value(batch, "index"),
            "kinds": dict(self.kinds),
            "inputs": {n: t.float().cpu() for n, t in inputs.items()},
            "outputs": {n: t.float().cpu() for n, t in recon.items()},
        }

    def on_validation_epoch_end(self) -> None:
        prefix = {"label": "val/acc_", "image": "val/psnr_", "audio": "val/psnr_"}
        metrics = {"val/loss": self.val_loss}
        metrics.update({prefix[self.kinds[n]] + n: m for n, m in zip(self.model.modalities, self.val_metrics)})
        self.log_metrics(metrics)
