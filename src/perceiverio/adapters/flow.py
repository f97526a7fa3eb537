"""Optical flow adapters (paper §4.2): two frames in as 3×3 patches of every pixel, flow out in pixels."""

from __future__ import annotations

import torch
from torch import nn

from .image import ImageInputAdapter, extract_patches_3x3


class FlowInputAdapter(ImageInputAdapter):
    """Frames ``[B, 2, 3, H, W]`` -> the 3×3 patch around every pixel of both frames (27 channels per frame),
    then the image adapter of ``adapter_config`` (Linear after patching, time squeezed, Fourier positions):
    tokens ``[B, H·W, C]``, patch features then positions (official ``ImagePreprocessor(prep_type='patches')``)."""

    @staticmethod
    def check_frames(frames: object) -> torch.Tensor:
        """A float tensor ``[B, 2, 3, H, W]`` with B, H, W > 0, else a ValueError saying what is wrong."""
        what = "frames must be a [B, 2, 3, H, W] tensor (two RGB frames per example, channels first)"
        if not isinstance(frames, torch.Tensor):
            raise ValueError(f"{what}, got {type(frames).__name__}")
        if frames.dim() != 5:
            raise ValueError(f"{what}, got shape {tuple(frames.shape)} (rank {frames.dim()})")
        if not frames.dtype.is_floating_point:
            raise ValueError(f"frames must be floating point in [-1, 1] (pixel / 255 * 2 - 1), got {frames.dtype}")
        b, t, c, h, w = frames.shape
        if b == 0 or h == 0 or w == 0:
            raise ValueError(f"frames must have a non-empty batch and image, got shape {tuple(frames.shape)}")
        if t != 2:
            raise ValueError(f"{what}: dim 1 must hold exactly 2 frames, got {t}")
        if c != 3:
            raise ValueError(f"{what}: dim 2 must hold 3 colour channels, got {c}")
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
