"""Lightning modules of the tasks: losses of the paper, dataset-level metrics, augmentation.

Each module takes the fields of its model's config dataclass as flat arguments (``MaskedLanguageModelTask(max_seq_len=
128, encoder=...)``; in YAML ``init_args: {max_seq_len: 128, ...}``, on the command line ``--model.max_seq_len 128``),
or a whole config as its first argument; unset fields keep the model's ``.tiny()`` preset, small enough for a CPU.
It inherits the optimiser, schedule, ``gradient_checkpointing``, ``compile`` and ``export`` of
:class:`~perceiverio.training.base.PerceiverTask`. Batches are dicts of tensors (see each class). Training logs
``train/loss`` every step; validation metrics are sums over the whole validation set (all batches, all processes)
divided once (:class:`~perceiverio.training.metrics.RatioMetric`), logged at the end of each validation as
``val/...``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..tasks.flow import OpticalFlow, OpticalFlowConfig
from ..tasks.image import ImageClassifier, ImageClassifierConfig
from ..tasks.language import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    labeled_positions,
)
from ..tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from ..tasks.outputs import IGNORE_INDEX
from .augment import ImageAugmentation
from .base import PerceiverTask
from .metrics import LN2, RatioMetric, classification_stats, epe_stats, psnr, token_stats


def _get(batch: Any, key: str, default: Any = None) -> Any:
    try:
        value = batch[key]
    except (KeyError, AttributeError, TypeError, IndexError):
        return default
    return default if value is None else value


def _require(batch: Any, key: str, what: str) -> Any:
    value = _get(batch, key)
    if value is None:
        got = sorted(batch.keys()) if hasattr(batch, "keys") else f"a {type(batch).__name__}"
        raise ValueError(f"{what} batches must be dicts with the key {key!r}; got {got}")
    return value


class _Task(PerceiverTask):
    """Shared helpers: step logging and logging a group of :class:`RatioMetric` at the end of validation."""

    def _log_train(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for i, (name, value) in enumerate(values.items()):
            self.log(name, value.detach(), on_step=True, on_epoch=False, prog_bar=i == 0, batch_size=batch_size)
        self.log_lr()

    def _log_metrics(self, metrics: dict[str, RatioMetric], prog_bar: tuple[str, ...] = ()) -> dict[str, float]:
        """Compute (synchronised across processes), log the defined ones, reset; returns the values."""
        values = {}
        for name, metric in metrics.items():
            value = metric.compute()
            metric.reset()
            if torch.isfinite(value):
                values[name] = float(value)
                self.log(name, values[name], prog_bar=name in prog_bar, sync_dist=True)
        return values


# ------------------------------------------------------------------------------------------------------ language
class MaskedLanguageModelTask(_Task):
    """Byte masked language modelling (paper §4.1).

    Batch: ``{"input_ids" [B, L] long, "attention_mask" [B, L], "labels" [B, L] (-100 = not predicted)}`` (a
    :class:`~perceiverio.tokenizer.BatchEncoding` from
    :class:`~perceiverio.data.masking.WholeWordMaskingCollator` works too). ``decode_labeled_only``: decode only
    the labelled positions in training (same loss, far cheaper); validation always does.

    Logs ``train/loss``; ``val/loss`` (cross-entropy in nats per labelled byte), ``val/masked_byte_acc`` and
    ``val/bits_per_byte`` (= ``val/loss`` / ln 2), each summed over all labelled bytes of the validation set, and
    ``val/unigram_acc``, the accuracy of always predicting the most frequent masked byte (the baseline to beat).
    """

    config_class, default_config = MaskedLanguageModelConfig, MaskedLanguageModelConfig.tiny

    def __init__(
        self, config: MaskedLanguageModelConfig | None = None, *, decode_labeled_only: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(config, decode_labeled_only=decode_labeled_only, **kwargs)
        self._setup_model(MaskedLanguageModel(self.model_config))
        self.decode_labeled_only = decode_labeled_only
        self.val_nats, self.val_correct = RatioMetric(), RatioMetric()
        self._byte_counts: torch.Tensor | None = None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = _require(batch, "input_ids", "MLM"), _require(batch, "labels", "MLM")
        out = self(ids, _get(batch, "attention_mask"), labels=labels, decode_labeled_only=self.decode_labeled_only)
        self._log_train({"train/loss": out.loss}, ids.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = _require(batch, "input_ids", "MLM"), _require(batch, "labels", "MLM")
        out = self(ids, _get(batch, "attention_mask"), labels=labels, decode_labeled_only=True)
        positions, valid = labeled_positions(labels)
        targets = labels.gather(1, positions).masked_fill(~valid, IGNORE_INDEX)
        nats, correct, count = token_stats(out.logits, targets)
        self.val_nats.update(nats, count)
        self.val_correct.update(correct, count)
        seen = targets[targets != IGNORE_INDEX]
        counts = torch.bincount(seen, minlength=self.model.config.vocab_size).double()
        self._byte_counts = counts if self._byte_counts is None else self._byte_counts + counts

    def on_validation_epoch_end(self) -> None:
        nats = self.val_nats.compute()
        self._log_metrics({"val/masked_byte_acc": self.val_correct}, prog_bar=("val/masked_byte_acc",))
        if self._byte_counts is not None and self._byte_counts.sum() > 0:
            # the baseline to beat: always predicting the most frequent masked byte of this validation set
            self.log("val/unigram_acc", float(self._byte_counts.max() / self._byte_counts.sum()), sync_dist=True)
        self._byte_counts = None
        self.val_nats.reset()
        if torch.isfinite(nats):
            self.log("val/loss", float(nats), sync_dist=True)
            self.log("val/bits_per_byte", float(nats) / LN2, prog_bar=True, sync_dist=True)


class SequenceClassificationTask(_Task):
    """Byte sequence classification (GLUE-style fine-tuning).

    Batch: ``{"input_ids" [B, L], "attention_mask" [B, L], "labels" [B]}`` (class ids, -100 ignored; floats for a
    ``num_classes=1`` regressor). Logs ``train/loss``, ``val/loss`` (mean cross-entropy, or MSE for a regressor) and
    ``val/acc`` (classifiers only).
    """

    config_class, default_config = SequenceClassifierConfig, SequenceClassifierConfig.tiny

    def __init__(self, config: SequenceClassifierConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._setup_model(SequenceClassifier(self.model_config))
        self.val_loss, self.val_acc = RatioMetric(), RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = _require(batch, "input_ids", "classification"), _require(batch, "labels", "classification")
        out = self(ids, _get(batch, "attention_mask"), labels=labels)
        self._log_train({"train/loss": out.loss}, ids.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = _require(batch, "input_ids", "classification"), _require(batch, "labels", "classification")
        logits = self(ids, _get(batch, "attention_mask")).logits
        if self.model.config.num_classes == 1:
            self.val_loss.update((logits.squeeze(-1).float() - labels.float()).square().sum(), labels.numel())
            return
        nats, correct, count = classification_stats(logits, labels)
        self.val_loss.update(nats, count)
        self.val_acc.update(correct, count)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=("val/acc",))


class MultitaskClassificationTask(_Task):
    """Multitask-query classification (the paper's GLUE variant): one learned query per task.

    Batch: ``{"input_ids", "attention_mask", "labels": {task: [B]}}`` with -100 where an example has no label for
    that task. Logs ``train/loss`` (mean over the labelled tasks), ``val/acc_<task>`` per classification task,
    ``val/acc`` (their mean) and ``val/loss`` (mean over tasks of each task's mean loss; MSE for regression tasks).
    """

    config_class, default_config = MultitaskClassifierConfig, MultitaskClassifierConfig.tiny

    def __init__(self, config: MultitaskClassifierConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        config = self.model_config
        self._setup_model(MultitaskClassifier(config))
        self.tasks = dict(config.tasks)
        # lists in task order (task names need not be valid module names)
        self.val_losses = nn.ModuleList(RatioMetric() for _ in self.tasks)
        self.val_accs = nn.ModuleList(RatioMetric() for _ in self.tasks)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = _require(batch, "input_ids", "multitask"), _require(batch, "labels", "multitask")
        out = self(ids, _get(batch, "attention_mask"), labels=labels)
        loss = out.loss
        if loss is None:  # no labels at all in this batch: a zero loss keeps every process stepping together
            loss = sum(v.sum() for v in out.logits.values()) * 0.0
        self._log_train(
            {"train/loss": loss, **{f"train/loss_{k}": v for k, v in out.task_losses.items()}}, ids.shape[0]
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = _require(batch, "input_ids", "multitask"), _require(batch, "labels", "multitask")
        logits = self(ids, _get(batch, "attention_mask")).logits
        for i, (name, k) in enumerate(self.tasks.items()):
            y = labels.get(name) if hasattr(labels, "get") else None
            if y is None:
                continue
            if k == 1:
                keep = y != IGNORE_INDEX
                err = (logits[name].squeeze(-1).float() - y.float()).square()
                self.val_losses[i].update(err[keep].sum(), keep.sum())
                continue
            nats, correct, count = classification_stats(logits[name], y)
            self.val_losses[i].update(nats, count)
            self.val_accs[i].update(correct, count)

    def on_validation_epoch_end(self) -> None:
        names = list(self.tasks)
        losses = self._log_metrics({f"val/loss_{n}": m for n, m in zip(names, self.val_losses)})
        accs = self._log_metrics({f"val/acc_{n}": m for n, m in zip(names, self.val_accs)})
        if losses:
            self.log("val/loss", sum(losses.values()) / len(losses), sync_dist=True)
        if accs:
            self.log("val/acc", sum(accs.values()) / len(accs), prog_bar=True, sync_dist=True)


# ---------------------------------------------------------------------------------------------------------- vision
class ImageClassificationTask(_Task):
    """Image classification with the paper's ImageNet recipe (§4.5).

    Batch: ``{"images" [B, C, H, W] float, "labels" [B] long}``. Training batches (only) are augmented on the
    device with kornia (:class:`~perceiverio.training.augment.ImageAugmentation`): RandAugment (images must then be
    in [0, 1]; magnitude on the paper's 0–10 scale), MixUp (first half of the batch) and CutMix (second half) into
    class probabilities. ``label_smoothing`` (a field of the model config) applies to the training loss.

    Logs ``train/loss``; ``val/loss`` (plain cross-entropy, no smoothing) and ``val/acc``.
    """

    config_class, default_config = ImageClassifierConfig, ImageClassifierConfig.tiny

    def __init__(
        self,
        config: ImageClassifierConfig | None = None,
        *,
        randaugment: bool = False,
        randaugment_ops: int = 4,
        randaugment_magnitude: int = 5,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config,
            randaugment=randaugment,
            randaugment_ops=randaugment_ops,
            randaugment_magnitude=randaugment_magnitude,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            **kwargs,
        )
        config = self.model_config
        self._setup_model(ImageClassifier(config))
        self.augment = ImageAugmentation(
            config.num_classes, randaugment, randaugment_ops, randaugment_magnitude, mixup_alpha, cutmix_alpha
        )
        self.val_loss, self.val_acc = RatioMetric(), RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = _require(batch, "images", "image"), _require(batch, "labels", "image")
        images, targets = self.augment(images, labels)
        out = self(images, labels=targets)
        self._log_train({"train/loss": out.loss}, images.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = _require(batch, "images", "image"), _require(batch, "labels", "image")
        nats, correct, count = classification_stats(self(images).logits, labels)
        self.val_loss.update(nats, count)
        self.val_acc.update(correct, count)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=("val/acc",))


class OpticalFlowTask(_Task):
    """Optical flow (§4.2): loss = mean end-point error (EPE, pixels) over valid pixels.

    Batch: ``{"frames" [B, 2, 3, H, W] in [-1, 1], "flow" [B, 2, H, W] in pixels, optional "valid" [B, H, W]
    bool}``. Validation frames of the training size (or smaller) go through the model at once; larger ones are
    tiled as in the official evaluation (:meth:`~perceiverio.tasks.flow.OpticalFlow.predict`). Logs ``train/loss``
    (= ``train/epe``) and ``val/epe`` (averaged over every valid pixel of the validation set).
    """

    config_class, default_config = OpticalFlowConfig, OpticalFlowConfig.tiny

    def __init__(self, config: OpticalFlowConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._setup_model(OpticalFlow(self.model_config))
        self.val_epe = RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        frames, flow = _require(batch, "frames", "flow"), _require(batch, "flow", "flow")
        total, count = epe_stats(self(frames), flow, _get(batch, "valid"))
        loss = total / count.clamp(min=1)
        self._log_train({"train/loss": loss, "train/epe": loss}, frames.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        frames, flow = _require(batch, "frames", "flow"), _require(batch, "flow", "flow")
        h, w = frames.shape[-2:]
        th, tw = self.model.config.tile
        prediction = self.model.predict(frames) if (h >= th and w >= tw and (h, w) != (th, tw)) else self(frames)
        self.val_epe.update(*epe_stats(prediction, flow, _get(batch, "valid")))

    def on_validation_epoch_end(self) -> None:
        self._log_metrics({"val/epe": self.val_epe}, prog_bar=("val/epe",))


# ------------------------------------------------------------------------------------------------------ multimodal
class MultimodalAutoencodingTask(_Task):
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

    def _inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        return {name: _require(batch, name, "multimodal") for name in self.model.modalities}

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
        self._log_train({"train/loss": result.loss, **{f"train/loss_{k}": v for k, v in result.terms.items()}}, b)
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

    def on_validation_epoch_end(self) -> None:
        prefix = {"label": "val/acc_", "image": "val/psnr_", "audio": "val/psnr_"}
        metrics = {"val/loss": self.val_loss}
        metrics.update({prefix[self.kinds[n]] + n: m for n, m in zip(self.model.modalities, self.val_metrics)})
        self._log_metrics(metrics)
