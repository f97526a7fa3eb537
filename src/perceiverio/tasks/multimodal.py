"""Multimodal autoencoding (paper §4.3, Kinetics-700): video, audio and a class label through one latent array.

Each modality has an input adapter (video: 1×4×4 space-to-depth patches + 3-D Fourier features; audio: 16-sample
patches + 1-D Fourier features; label: one one-hot token), a query builder (video: 3-D Fourier features of output
*pixel* positions; audio: 1-D Fourier features of patch positions; label: a learned vector) and an output adapter
(Linear to pixels, to samples, to logits). Modalities are named by the user and always ordered by sorted name.

``forward(inputs, subsampled_points)`` decodes only the given points: ``{name: flat indices or None}`` (None = every
point of that modality); the keys choose which modalities are decoded. ``reconstruct(inputs)`` encodes once and
decodes every point in chunks, returning video ``[B, T, C, H, W]``, audio ``[B, S]`` and label logits ``[B, K]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters.audio import AudioAdapterConfig, AudioInputAdapter, AudioOutputAdapter
from ..adapters.image import ImageAdapterConfig, ImageInputAdapter
from ..adapters.label import LabelAdapterConfig, LabelInputAdapter, LabelOutputAdapter
from ..adapters.multimodal import (
    FourierQueries,
    MultimodalInputAdapter,
    MultimodalOutputAdapter,
    MultimodalQueries,
    ProjectionOutputAdapter,
)
from ..core.attention import check_flag
from ..core.checks import check_chunk_size, check_range
from ..core.init import init_official_
from ..core.perceiver import AttentionMaps, PerceiverIO, build_decoder, build_encoder
from ..core.queries import LearnedQueries
from .multimodal_config import LOSS_WEIGHTS, MultimodalAutoencoderConfig, with_modality_names
from .outputs import MultimodalLoss

__all__ = ["MultimodalAutoencoder", "MultimodalAutoencoderConfig", "with_modality_names"]

Points = Mapping[str, torch.Tensor | None]


class MultimodalAutoencoder(PerceiverIO):
    """Perceiver IO multimodal autoencoder (see the module docstring and :class:`MultimodalAutoencoderConfig`).

    per-modality adapters, padded and concatenated → encoder → per-modality queries (Fourier features of output
    points, a learned label query), padded and concatenated → decoder → per-modality output adapters.

    Inputs: ``{name: tensor}``: videos ``[B, T, C, H, W]``, images ``[B, C, H, W]``, audio ``[B, S, 1]`` or
    ``[B, S]``, labels one-hot ``[B, K]`` (or class ids ``[B]``). Outputs of ``forward``: images/videos
    ``[B, n, C]`` at the n decoded pixels, audio ``[B, n·p]`` for n decoded patches, label logits ``[B, K]``.
    """

    def __init__(self, config: MultimodalAutoencoderConfig) -> None:
        adapters: dict[str, nn.Module] = {}
        builders: dict[str, nn.Module] = {}
        out = config.decoder.num_output_channels or config.decoder.num_query_channels
        outputs: dict[str, nn.Module] = {}
        for name, cfg in config.modalities:
            if isinstance(cfg, ImageAdapterConfig):
                adapters[name] = ImageInputAdapter(cfg)
                builders[name] = FourierQueries(
                    cfg.image_shape,
                    cfg.num_bands,
                    adapters[name].position.max_resolution,
                    cfg.concat_pos,
                    cfg.sine_only,
                )
                outputs[name] = ProjectionOutputAdapter(out, cfg.num_image_channels)
            elif isinstance(cfg, AudioAdapterConfig):
                adapters[name] = AudioInputAdapter(cfg)
                builders[name] = FourierQueries(
                    (cfg.num_patches,), cfg.num_bands, (cfg.resolution,), cfg.concat_pos, cfg.sine_only
                )
                outputs[name] = AudioOutputAdapter(out, cfg.samples_per_patch)
            else:
                adapters[name] = LabelInputAdapter(cfg)
                builders[name] = LearnedQueries(1, cfg.num_query_channels)
                outputs[name] = LabelOutputAdapter(out, cfg.num_classes)
        input_adapter = MultimodalInputAdapter(
            adapters, config.min_padding_size, dict(config.mask_probs), config.apply_mask_in_eval
        )
        super().__init__(
            input_adapter=input_adapter,
            encoder=build_encoder(config, input_adapter.num_input_channels),
            output_queries=MultimodalQueries(builders, config.query_padding_size),
            decoder=build_decoder(config),
            output_adapter=MultimodalOutputAdapter(outputs),
            config=config,
        )
        init_official_(self.output_adapter)

    @property
    def modalities(self) -> list[str]:
        return [n for n, _ in self.config.modalities]

    def num_points(self, name: str) -> int:
        """Output points of a modality: pixels T·H·W, audio patches S/p, or 1 for a label."""
        return self.output_queries.builders[name].num_points

    # ---------------------------------------------------------------------------------------------- forward
    def encode(
        self,
        inputs: Mapping[str, torch.Tensor],
        apply_mask: bool | None = None,
        generator: torch.Generator | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``{name: raw input}`` -> latents ``[B, N, D]``. ``apply_mask`` overrides the train/eval rule of
        masking; ``generator`` seeds the Bernoulli draws. ``return_attention=True``: ``(latents, encoder attention
        [B, h, N, M])`` over the M tokens of every modality, in the adapter's order."""
        check_flag(return_attention)
        self.input_adapter.check_inputs(inputs)
        for name, cfg in self.config.modalities:
            if isinstance(cfg, ImageAdapterConfig):
                self._check_image(name, inputs[name])
        x, _ = self.input_adapter(inputs, apply_mask=apply_mask, generator=generator)  # [B, M, C]
        return self.encoder(x, return_attention=return_attention)

    def decode(
        self, latents: torch.Tensor, subsampled_points: Points | None = None, chunk_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Latents -> ``{name: output}``; ``subsampled_points`` as in :meth:`forward`."""
        points = self._check_points(subsampled_points, latents.shape[0], latents.device)
        return self._decode(latents, points, chunk_size)

    def _decode(
        self,
        latents: torch.Tensor,
        points: dict[str, torch.Tensor | None],
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        q = self.output_queries(latents, points)  # [B, O, E]: every modality's points, sorted by name
        if return_attention:  # [B, O, F], [B, h, O, N]
            h, attention = self.decoder(q, latents, chunk_size=chunk_size, return_attention=True)
            return self.output_adapter(h, self.output_queries.sizes(points)), attention
        h = self.decoder(q, latents, chunk_size=chunk_size)  # [B, O, F]
        return self.output_adapter(h, self.output_queries.sizes(points))

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        subsampled_points: Points | None = None,
        *,
        apply_mask: bool | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], AttentionMaps]:
        """Encode every modality and decode the points in ``subsampled_points``: ``{name: [n] or [B, n] flat
        indices}``. A modality that is absent (or ``None``) is decoded at every point (the label, typically); an
        empty index tensor leaves it out. Output sizes follow the points, not the inputs.

        ``return_attention=True`` returns ``(outputs, AttentionMaps)`` (outputs unchanged): ``encoder [B, h, N, M]``
        over every modality's tokens, ``decoder [B, h, O, N]`` over the decoded points (modalities sorted by name,
        padding queries included)."""
        if not check_flag(return_attention):
            return self.decode(self.encode(inputs, apply_mask, generator), subsampled_points, chunk_size)
        z, encoder_attention = self.encode(inputs, apply_mask, generator, return_attention=True)
        points = self._check_points(subsampled_points, z.shape[0], z.device)
        out, decoder_attention = self._decode(z, points, chunk_size, return_attention=True)
        return out, AttentionMaps(encoder=encoder_attention, decoder=decoder_attention)

    @torch.no_grad()
    def reconstruct(
        self,
        inputs: Mapping[str, torch.Tensor],
        chunk_size: int | None = 16_384,
        progress: bool = False,
        apply_mask: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode once, decode every output point ``chunk_size`` queries at a time.

        Returns videos ``[B, T, C, H, W]`` (images ``[B, C, H, W]``), audio ``[B, S]`` and label logits ``[B, K]``;
        identical to decoding all points at once (``chunk_size=None``). ``progress=True`` shows a tqdm bar.
        """
        chunk_size = check_chunk_size(chunk_size) or max(self.num_points(n) for n in self.modalities)
        z = self.encode(inputs, apply_mask, generator)
        jobs = [
            (n, s, min(s + chunk_size, self.num_points(n)))
            for n in self.modalities
            for s in range(0, self.num_points(n), chunk_size)
        ]
        if progress:
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, desc="decoding", unit="chunk")
        pieces: dict[str, list[torch.Tensor]] = {n: [] for n in self.modalities}
        for name, s, e in jobs:
            index = torch.arange(s, e, device=z.device)
            pieces[name].append(self._decode(z, {name: index})[name])
        outputs = {}
        for name, cfg in self.config.modalities:
            y = torch.cat(pieces[name], dim=1)
            if isinstance(cfg, ImageAdapterConfig):  # [B, T·H·W, C] -> [B, T, C, H, W] / [B, C, H, W]
                y = y.reshape(y.shape[0], *cfg.image_shape, y.shape[-1]).movedim(-1, -3)
            outputs[name] = y
        return outputs

    # ------------------------------------------------------------------------------------------------- loss
    def targets(
        self, inputs: Mapping[str, torch.Tensor], subsampled_points: Points | None = None
    ) -> dict[str, torch.Tensor]:
        """The ground truth at the decoded points, shaped like ``forward``'s outputs (labels as given)."""
        self.input_adapter.check_inputs(inputs)
        b = next(iter(inputs.values())).shape[0]
        points = self._check_points(subsampled_points, b, None)
        out = {}
        for name in points:
            cfg, adapter = self.config.modality_configs[name], self.input_adapter.adapters[name]
            if isinstance(cfg, LabelAdapterConfig):
                out[name] = inputs[name]
                continue
            if isinstance(cfg, ImageAdapterConfig):
                x = self._check_image(name, inputs[name])
                flat = x.movedim(-3, -1).reshape(b, -1, x.shape[-3])  # [B, T·H·W, C]
            else:
                flat = adapter.check_input(inputs[name], f"inputs[{name!r}]").reshape(
                    b, -1, cfg.samples_per_patch
                )  # [B, P, p]
            idx = points[name]
            if idx is not None:
                idx = idx.to(flat.device)
                flat = flat[:, idx] if idx.dim() == 1 else flat.gather(1, idx[..., None].expand(-1, -1, flat.shape[-1]))
            out[name] = flat if isinstance(cfg, ImageAdapterConfig) else flat.reshape(b, -1)
        return out

    def loss(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        weights: Mapping[str, float] | None = None,
    ) -> MultimodalLoss:
        """Paper loss: weighted L1 for images/audio (0.03 / 1) and cross-entropy for labels (1e-4), summed over
        the modalities in ``outputs``. ``weights`` (by modality name) override the defaults by kind. Label targets
        may be class ids ``[B]`` or (soft) one-hot ``[B, K]``."""
        kinds, weights = self.config.kinds, dict(weights or {})
        terms = {}
        for name, y in outputs.items():
            if name not in kinds or name not in targets:
                raise ValueError(f"loss: no target (or unknown modality) for output {name!r}")
            t = targets[name].to(y.device)
            if kinds[name] == "label":
                terms[name] = F.cross_entropy(y.float(), t.long() if not t.dtype.is_floating_point else t.float())
            else:
                if t.shape != y.shape:
                    raise ValueError(f"loss: target {name!r} has shape {tuple(t.shape)}, output {tuple(y.shape)}")
                terms[name] = F.l1_loss(y.float(), t.float())
        if not terms:
            raise ValueError("loss: no outputs")
        total = sum(weights.get(n, LOSS_WEIGHTS[kinds[n]]) * v for n, v in terms.items())
        return MultimodalLoss(loss=total, terms=terms)

    # ----------------------------------------------------------------------------------------------- checks
    def _check_image(self, name: str, x: object) -> torch.Tensor:
        """The configured size is required: the output grid (and the outputs' meaning) is fixed by it."""
        cfg = self.config.modality_configs[name]
        x = self.input_adapter.adapters[name].check_input(x, f"inputs[{name!r}]")
        size = (x.shape[1], *x.shape[-2:]) if cfg.is_video else tuple(x.shape[-2:])
        if tuple(size) != cfg.image_shape:
            raise ValueError(
                f"inputs[{name!r}] must have the configured size {cfg.image_shape} "
                f"({'T, H, W' if cfg.is_video else 'H, W'}), got shape {tuple(x.shape)}"
            )
        return x

    def _check_points(self, points: Points | None, batch: int, device) -> dict[str, torch.Tensor | None]:
        if points is None:
            return {n: None for n in self.modalities}
        if not isinstance(points, Mapping):
            raise ValueError(
                f"subsampled_points must be a dict {{modality: indices or None}} over {self.modalities}, got {points!r}"
            )
        points = {**{n: None for n in self.modalities}, **points}  # absent: every point
        unknown = sorted(str(k) for k in points if k not in self.modalities)
        if unknown:
            raise ValueError(f"subsampled_points names unknown modalities {unknown}; modalities: {self.modalities}")
        checked = {}
        for name in sorted(points):
            idx = points[name]
            if idx is not None:
                if not isinstance(idx, torch.Tensor):
                    idx = torch.as_tensor(idx)
                if idx.numel() == 0:  # an empty selection leaves the modality out
                    continue
                if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
                    raise ValueError(f"subsampled_points[{name!r}] must hold integer indices, got {idx.dtype}")
                if idx.dim() not in (1, 2) or (idx.dim() == 2 and idx.shape[0] != batch):
                    raise ValueError(
                        f"subsampled_points[{name!r}] must have shape [n] or [B={batch}, n], got {tuple(idx.shape)}"
                    )
                check_range(idx, 0, self.num_points(name), f"subsampled_points[{name!r}]")
                idx = idx.long() if device is None else idx.to(device=device, dtype=torch.long)
            checked[name] = idx
        if not checked:
            raise ValueError("subsampled_points leaves out every modality: nothing to decode")
        return checked
