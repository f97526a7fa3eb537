"""Optical flow adapters (paper §4.2): two frames in as 3×3 patches of every pixel, flow out in pixels."""

from __future__ import annotations

import torch
from torch import nn

from ..core.checks import check_float_array
from .image import ImageInputAdapter, extract_patches_3x3


class FlowInputAdapter(ImageInputAdapter):
    """Frames ``[B, 2, 3, H, W]`` -> the 3×3 patch around every pixel of both frames (27 channels per frame),
    then the image adapter of ``adapter_config`` (Linear after patching, time squeezed, Fourier positions):
    tokens ``[B, H·W, C]``, patch features then positions (official ``ImagePreprocessor(prep_type='patches')``)."""

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
        return super().forward(patches.movedim(-1, 2))


class FlowOutputAdapter(nn.Module):
    """Decoder output ``[B, H·W, 2]`` -> flow in pixels: divided by ``rescale_factor`` (official ``FlowDecoder``),
    times ``output_scale`` (the official demo's factor 20)."""

    def __init__(self, rescale_factor: float, output_scale: float) -> None:
        super().__init__()
        self.rescale_factor, self.output_scale = rescale_factor, output_scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h / self.rescale_factor * self.output_scale
