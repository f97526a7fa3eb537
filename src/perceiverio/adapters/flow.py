"""Optical flow adapters (paper §4.2): two frames in as 3×3 patches of every pixel, flow out in pixels.

Optionally (not in the paper, off by default) each token also carries a local correlation volume, the classic cue
of correlation-based flow networks (FlowNetC, PWC-Net, RAFT): the cosine similarity of a pixel's 3×3 patch in frame 1
with the patches of frame 2 at ``(2r + 1)²`` displacements, so that matching is given rather than learnt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_float_array
from .image import ImageAdapterConfig, ImageInputAdapter, extract_patches_3x3


def num_correlation_channels(radius: int) -> int:
    """Displacements of a correlation volume of ``radius`` r: ``(2r + 1)²`` (0 when r = 0)."""
    return (2 * radius + 1) ** 2 if radius else 0


def normalised_patches(patches: torch.Tensor) -> torch.Tensor:
    """Patches ``[B, T, H, W, 27]`` (:func:`~perceiverio.adapters.image.extract_patches_3x3`) -> each minus its mean,
    over its norm: ``[B, T, 27, H, W]`` (zero where the patch is flat), so that dot products are cosine similarities,
    blind to brightness and contrast."""
    p = patches - patches.mean(-1, keepdim=True)
    return (p / p.norm(dim=-1, keepdim=True).clamp(min=1e-6)).movedim(-1, 2)


def local_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int, stride: int = 1) -> torch.Tensor:
    """``[B, C, H, W]`` features of two frames -> ``[B, (2r+1)², H, W]``: channel ``k = (i, j)`` (row-major,
    ``i, j`` in 0..2r) is ``Σ_c f1(y, x) · f2(y + dy, x + dx)`` with ``(dy, dx) = ((i - r)·stride, (j - r)·stride)``,
    and ``f2`` zero outside the frame."""
    h, w = f1.shape[-2:]
    reach = radius * stride
    f2 = F.pad(f2, (reach, reach, reach, reach))
    out = [
        (f1 * f2[..., reach + dy : reach + dy + h, reach + dx : reach + dx + w]).sum(1)
        for dy in range(-reach, reach + 1, stride)
        for dx in range(-reach, reach + 1, stride)
    ]
    return torch.stack(out, 1)


class FlowInputAdapter(ImageInputAdapter):
    """Frames ``[B, 2, 3, H, W]`` -> the 3×3 patch around every pixel of both frames (27 channels per frame),
    then the image adapter of ``adapter_config`` (Linear after patching, time squeezed, Fourier positions):
    tokens ``[B, H·W, C]``, patch features then positions (official ``ImagePreprocessor(prep_type='patches')``).

    ``correlation_radius`` r > 0 appends to every token the :func:`local_correlation` of the frames'
    :func:`normalised_patches` over displacements ``{-r, ..., r} · correlation_stride`` in x and y: ``(2r + 1)²``
    more channels (not in the paper; 0, the default, is the official model)."""

    def __init__(self, config: ImageAdapterConfig, correlation_radius: int = 0, correlation_stride: int = 1) -> None:
        super().__init__(config)
        self.correlation_radius, self.correlation_stride = correlation_radius, correlation_stride
        self.num_input_channels += num_correlation_channels(correlation_radius)

    @staticmethod
    def check_frames(frames: object) -> torch.Tensor:
        """A float tensor ``[B, 2, 3, H, W]`` with B, H, W > 0, else a ValueError saying what is wrong."""
        what = " (two RGB frames per example, channels first, in [-1, 1]: pixel / 255 * 2 - 1)"
        _, t, c, _, _ = check_float_array(frames, ("B", "2", "3", "H", "W"), "frames", what).shape
        if t != 2:
            raise ValueError(f"frames must hold exactly 2 frames in dim 1 ([B, 2, 3, H, W]), got {t}")
        if c != 3:
            raise ValueError(f"frames must hold 3 colour channels in dim 2 ([B, 2, 3, H, W]), got {c}")
        return frames

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B, 2, 3, H, W] -> [B, H·W, C]
        patches = extract_patches_3x3(self.check_frames(frames))  # [B, 2, H, W, 27], order (ph, pw, c)
        tokens = super().forward(patches.movedim(-1, 2))  # [B, H·W, C]
        if not self.correlation_radius:
            return tokens
        p = normalised_patches(patches)  # [B, 2, 27, H, W]
        corr = local_correlation(p[:, 0], p[:, 1], self.correlation_radius, self.correlation_stride)  # [B, K, H, W]
        return torch.cat([tokens, corr.flatten(2).transpose(1, 2).to(tokens.dtype)], -1)  # [B, H·W, C + K]


class FlowOutputAdapter(nn.Module):
    """Decoder output ``[B, H·W, 2]`` -> flow in pixels: divided by ``rescale_factor`` (official ``FlowDecoder``),
    times ``output_scale`` (the official demo's factor 20)."""

    def __init__(self, rescale_factor: float, output_scale: float) -> None:
        super().__init__()
        self.rescale_factor, self.output_scale = rescale_factor, output_scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h / self.rescale_factor * self.output_scale
