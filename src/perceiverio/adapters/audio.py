"""Raw audio as Perceiver IO tokens (official ``AudioPreprocessor`` / ``AudioPostprocessor``, ``prep_type='patches'``).

Input: samples ``[B, S, 1]`` (or ``[B, S]``), cut into ``S / p`` non-overlapping patches of ``p = samples_per_patch``
samples; each patch token is its ``p`` samples followed by 1-D Fourier features of the patch index:

    tokens [B, S/p, p + (2K + 1)]      positions linspace(-1, 1, S/p),  frequencies linspace(1, R/2, K)

where ``R = max_resolution``. The official Kinetics model (and transformers) sets ``R`` to the number of *samples*
(30,720), not the number of patches (1,920); that is the default here too.

Output: a Linear from the decoder width to ``p`` samples per decoded patch, flattened to ``[B, n·p]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.config import check_positive
from ..core.position import FourierPositionEncoding, num_fourier_channels


@dataclass(frozen=True)
class AudioAdapterConfig:
    """Audio modality.

    num_samples: samples per example S (fixes the output grid of S / samples_per_patch patches).
    samples_per_patch: p, the samples in one token (and in one decoded query).
    num_bands, max_resolution, concat_pos, sine_only: the 1-D Fourier features of the patch index, used for both
        the input tokens and the output queries; ``max_resolution`` defaults to ``num_samples`` (official colab).
    """

    num_samples: int = 30_720
    samples_per_patch: int = 16
    num_bands: int = 192
    max_resolution: int | None = None
    concat_pos: bool = True
    sine_only: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "num_samples", "samples_per_patch", "num_bands")
        if self.num_samples % self.samples_per_patch:
            raise ValueError(
                f"AudioAdapterConfig: num_samples ({self.num_samples}) must be a multiple of "
                f"samples_per_patch ({self.samples_per_patch})"
            )
        if self.max_resolution is not None and (not isinstance(self.max_resolution, int) or self.max_resolution <= 0):
            raise ValueError(
                f"AudioAdapterConfig.max_resolution must be a positive int or None, got {self.max_resolution!r}"
            )

    @property
    def num_patches(self) -> int:
        return self.num_samples // self.samples_per_patch

    @property
    def resolution(self) -> int:
        """The Fourier ``max_resolution`` actually used."""
        return self.max_resolution if self.max_resolution is not None else self.num_samples

    @property
    def num_position_channels(self) -> int:
        return num_fourier_channels(1, self.num_bands, self.concat_pos, self.sine_only)

    @property
    def num_input_channels(self) -> int:
        return self.samples_per_patch + self.num_position_channels


class AudioInputAdapter(nn.Module):
    """``[B, S, 1]`` or ``[B, S]`` samples -> ``[B, S/p, p + pos]`` tokens (no parameters).

    ``forward(x, return_features=True)`` also returns the patches before the position encoding ``[B, S/p, p]``.
    """

    def __init__(self, config: AudioAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.position = FourierPositionEncoding(
            config.num_patches, config.num_bands, (config.resolution,), config.concat_pos, config.sine_only
        )
        self.num_input_channels = config.num_input_channels

    def check_input(self, x: object, name: str = "audio") -> torch.Tensor:
        """``x`` as float mono samples ``[B, S]`` (from ``[B, S, 1]`` or ``[B, S]``), else a ValueError naming
        ``name``."""
        s = self.config.num_samples
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"{name} must be a tensor [B, {s}, 1] or [B, {s}] of audio samples, got {type(x).__name__}"
            )
        if x.dim() == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.dim() != 2:
            raise ValueError(f"{name} must have shape [B, {s}, 1] or [B, {s}] (mono samples), got {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            raise ValueError(f"{name} must hold floating-point samples, got dtype {x.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must have a non-empty batch, got shape {tuple(x.shape)}")
        if x.shape[1] != s:
            raise ValueError(f"{name} must have {s} samples per example (the configured num_samples), got {x.shape[1]}")
        return x

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = self.check_input(x)
        patches = x.reshape(x.shape[0], -1, self.config.samples_per_patch)  # [B, S/p, p]
        pos = self.position(x.shape[0], device=x.device, dtype=x.dtype)  # [B, S/p, pos]
        out = torch.cat([patches, pos], dim=-1)
        return (out, patches) if return_features else out


class AudioOutputAdapter(nn.Module):
    """Decoder output ``[B, n, E]`` (one row per decoded patch) -> samples ``[B, n·p]`` (official
    ``AudioPostprocessor``)."""

    def __init__(self, num_decoder_channels: int, samples_per_patch: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_decoder_channels, samples_per_patch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.linear(h)  # [B, n, p]
        return y.reshape(y.shape[0], -1)
