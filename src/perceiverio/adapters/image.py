"""Image and video input adapters (official ``ImagePreprocessor``): pixels, patches, conv1x1 or a conv stem, plus
Fourier or trainable position encodings, concatenated or added.

Images are ``[B, C, H, W]`` and videos ``[B, T, C, H, W]`` (PyTorch convention); the adapter returns tokens
``[B, M, C']`` flattened row-major over the token grid (time, height, width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import check_literals
from ..core.init import variance_scaling_
from ..core.position import FourierPositionEncoding, TrainablePositionEncoding, num_fourier_channels

PrepType = Literal["pixels", "patches", "conv1x1", "conv"]


# ------------------------------------------------------------------------------------------------ pure functions
def space_to_depth(x: torch.Tensor, dt: int, dh: int, dw: int) -> torch.Tensor:
    """``[B, T, H, W, C] -> [B, T/dt, H/dh, W/dw, dt·dh·dw·C]`` with channel order (dt, dh, dw, c) (official)."""
    b, t, h, w, c = x.shape
    if t % dt or h % dh or w % dw:
        raise ValueError(f"video of shape T={t}, H={h}, W={w} is not divisible by the patch size ({dt}, {dh}, {dw})")
    x = x.reshape(b, t // dt, dt, h // dh, dh, w // dw, dw, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // dt, h // dh, w // dw, dt * dh * dw * c)


def extract_patches_3x3(frames: torch.Tensor) -> torch.Tensor:
    """Each pixel's zero-padded 3×3 neighbourhood: ``[B, T, C, H, W] -> [B, T, H, W, 9·C]``, order (ph, pw, c)
    as ``tf.image.extract_patches`` (the official ``patches_for_flow``)."""
    b, t, c, h, w = frames.shape
    x = F.pad(frames.reshape(b * t, c, h, w), (1, 1, 1, 1))
    cols = F.unfold(x, kernel_size=3)  # [B·T, C·9, H·W], order (c, ph, pw)
    cols = cols.reshape(b, t, c, 9, h, w).permute(0, 1, 4, 5, 3, 2)  # [B, T, H, W, 9, C]
    return cols.reshape(b, t, h, w, 9 * c)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/Haiku 'SAME' padding (before, after): output ceil(size/stride), the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvStem(nn.Module):
    """Official ``Conv2DDownsample``: Conv 7×7/2 (SAME, no bias) → BatchNorm → ReLU → MaxPool 3×3/2 (SAME).

    224 → 112 → 56. ``unpadded_pool=True`` reproduces transformers' pool without padding (56 → 55 at 224);
    ``symmetric_conv_padding=True`` pads the conv by 3 on every side, as transformers' ``Conv2dSamePadding`` does
    (TF SAME pads (2, 3) for even sizes, so the two grids are one pixel apart).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 64,
        unpadded_pool: bool = False,
        symmetric_conv_padding: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, bias=False)
        self.batchnorm = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.1)
        self.unpadded_pool = unpadded_pool
        self.symmetric_conv_padding = symmetric_conv_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C', H/4, W/4]
        ph, pw = same_padding(x.shape[2], 7, 2), same_padding(x.shape[3], 7, 2)
        if self.symmetric_conv_padding:
            ph = pw = (3, 3)
        x = self.conv(F.pad(x, (*pw, *ph)))
        x = F.relu(self.batchnorm(x))
        if not self.unpadded_pool:
            ph, pw = same_padding(x.shape[2], 3, 2), same_padding(x.shape[3], 3, 2)
            x = F.pad(x, (*pw, *ph), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)

    def output_size(self, size: int) -> int:
        size = math.ceil(size / 2)
        return (size - 3) // 2 + 1 if self.unpadded_pool else math.ceil(size / 2)


# --------------------------------------------------------------------------------------------------- the adapter
@dataclass(frozen=True)
class ImageAdapterConfig:
    """How pixels become tokens.

    image_shape: ``(H, W)`` for images or ``(T, H, W)`` for videos: the input size the position encodings are
        built for (Fourier models accept other sizes at call time; trainable tables are interpolated for images).
    prep_type: ``pixels`` (strided subsampling), ``patches`` (space-to-depth by ``temporal_downsample`` ×
        ``spatial_downsample``², optional Linear ``conv_after_patching``), ``conv1x1`` (strided 1×1 conv) or ``conv``
        (:class:`ConvStem`, downsampling by 4).
    num_channels: output channels of the conv1x1/conv prep or of the Linear after patching.
    position_encoding: ``fourier`` (``num_bands``, ``max_resolution`` defaulting to the token grid, ``concat_pos``,
        ``sine_only``), ``trainable`` (``num_pos_channels``) or ``none``; ``project_pos_dim`` adds a Linear on the
        encoding; ``concat_or_add_pos``: ``concat`` (features then positions) or ``add``.
    """

    image_shape: tuple[int, ...] = (224, 224)
    num_image_channels: int = 3
    prep_type: PrepType = "pixels"
    spatial_downsample: int = 1
    temporal_downsample: int = 1
    num_channels: int | None = None
    conv_after_patching: bool = False
    position_encoding: Literal["fourier", "trainable", "none"] = "fourier"
    num_bands: int = 64
    max_resolution: tuple[int, ...] | None = None
    concat_pos: bool = True
    sine_only: bool = False
    num_pos_channels: int = 256
    project_pos_dim: int | None = None
    concat_or_add_pos: Literal["concat", "add"] = "concat"
    unpadded_pool: bool = False
    symmetric_conv_padding: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        if self.max_resolution is not None:
            object.__setattr__(self, "max_resolution", tuple(self.max_resolution))
        check_literals(self)
        if len(self.image_shape) not in (2, 3):
            raise ValueError(f"image_shape must be (H, W) or (T, H, W), got {self.image_shape}")
        if self.prep_type in ("conv1x1", "conv") and self.num_channels is None:
            raise ValueError(f"prep_type={self.prep_type!r} needs num_channels")
        if self.prep_type == "conv" and (len(self.image_shape) != 2 or self.spatial_downsample != 4):
            raise ValueError("the conv stem takes images (not videos) and downsamples by exactly 4")
        if self.temporal_downsample != 1 and self.prep_type != "patches":
            raise ValueError("temporal_downsample needs prep_type='patches'")

    @property
    def is_video(self) -> bool:
        return len(self.image_shape) == 3


class ImageInputAdapter(nn.Module):
    """Images ``[B, C, H, W]`` / videos ``[B, T, C, H, W]`` -> tokens ``[B, M, C']`` (see :class:`ImageAdapterConfig`).

    ``forward(x, return_features=True)`` also returns the tokens before the position encoding (the multimodal and
    flow models reuse them).
    """

    def __init__(self, config: ImageAdapterConfig) -> None:
        super().__init__()
        self.config = config
        c = config.num_image_channels
        self.conv: nn.Module | None = None
        self.patches_linear: nn.Linear | None = None
        if config.prep_type == "conv":
            self.conv = ConvStem(c, config.num_channels, config.unpadded_pool, config.symmetric_conv_padding)
            feat = config.num_channels
        elif config.prep_type == "conv1x1":
            self.conv = nn.Conv2d(c, config.num_channels, kernel_size=1, stride=config.spatial_downsample)
            feat = config.num_channels
        elif config.prep_type == "patches":
            feat = c * config.spatial_downsample**2 * config.temporal_downsample
            if config.conv_after_patching:
                self.patches_linear = nn.Linear(feat, config.num_channels)
                variance_scaling_(self.patches_linear)
                feat = config.num_channels
        else:
            feat = c
        self.num_feature_channels = feat
        grid = self.token_grid(config.image_shape)
        self.position: nn.Module | None = None
        if config.position_encoding == "fourier":
            self.position = FourierPositionEncoding(
                grid, config.num_bands, config.max_resolution or grid, config.concat_pos, config.sine_only
            )
            pos = num_fourier_channels(len(grid), config.num_bands, config.concat_pos, config.sine_only)
            self.pos_projection = nn.Linear(pos, config.project_pos_dim) if config.project_pos_dim else None
        elif config.position_encoding == "trainable":
            self.position = TrainablePositionEncoding(grid, config.num_pos_channels, config.project_pos_dim)
            self.pos_projection = None
        else:
            self.pos_projection = None
        pos_channels = 0 if self.position is None else (config.project_pos_dim or self.position.num_channels)
        if config.concat_or_add_pos == "add" and self.position is not None and pos_channels != feat:
            raise ValueError(f"adding positions needs equal widths: features {feat}, positions {pos_channels}")
        self.num_input_channels = feat + pos_channels if config.concat_or_add_pos == "concat" else feat

    def token_grid(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The token grid ``(H', W')`` or ``(T', H', W')`` of an input of spatial shape ``image_shape``."""
        cfg, s = self.config, self.config.spatial_downsample
        if cfg.prep_type == "conv":
            return tuple(self.conv.output_size(n) for n in image_shape)
        if cfg.prep_type == "patches":
            t = (image_shape[0] // cfg.temporal_downsample,) if len(image_shape) == 3 else ()
            grid = t + tuple(n // s for n in image_shape[-2:])
            return grid[1:] if len(grid) == 3 and grid[0] == 1 else grid  # time squeezed when it becomes 1
        return (
            tuple(math.ceil(n / s) for n in image_shape[-2:])
            if len(image_shape) == 2
            else (image_shape[0], *(math.ceil(n / s) for n in image_shape[-2:]))
        )

    def check_input(self, x: object, name: str = "images") -> torch.Tensor:
        """``x`` as a float ``[B, C, H, W]`` (``[B, T, C, H, W]`` for video) batch, else a ValueError naming
        ``name``."""
        cfg = self.config
        rank, what = (5, "[B, T, C, H, W]") if cfg.is_video else (4, "[B, C, H, W]")
        kind = "a video" if cfg.is_video else "an image"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be {kind} batch tensor {what}, got {type(x).__name__}")
        if x.dim() != rank:
            raise ValueError(f"{name} must be {kind} batch {what} (rank {rank}), got shape {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            raise ValueError(
                f"{name} must hold floating-point pixels, got dtype {x.dtype} (convert and normalise first)"
            )
        if 0 in x.shape:
            raise ValueError(
                f"{name} must have a non-empty batch and every dimension {what}, got shape {tuple(x.shape)}"
            )
        if x.shape[-3] != cfg.num_image_channels:
            raise ValueError(
                f"{name} must have {cfg.num_image_channels} channels at dim {x.dim() - 3} ({what}, channels first), "
                f"got shape {tuple(x.shape)}"
            )
        return x

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens before positions ``[B, M, C_feat]`` and the token grid."""
        cfg, s = self.config, self.config.spatial_downsample
        if cfg.prep_type in ("conv", "conv1x1"):
            y = self.conv(x)  # [B, C', H', W']
            return y.flatten(2).transpose(1, 2), tuple(y.shape[2:])
        if cfg.prep_type == "pixels":
            y = x[..., ::s, ::s].movedim(-3, -1)  # [B, (T,) H', W', C]
        else:
            v = (x if cfg.is_video else x.unsqueeze(1)).movedim(2, -1)  # [B, T, H, W, C]
            y = space_to_depth(v, cfg.temporal_downsample, s, s)  # [B, T', H', W', C']
            if y.shape[1] == 1:  # official: time is squeezed when it becomes 1 (images, optical flow)
                y = y.squeeze(1)
            if self.patches_linear is not None:
                y = self.patches_linear(y)
        grid = tuple(y.shape[1:-1])
        return y.reshape(y.shape[0], -1, y.shape[-1]), grid

    def position_encoding(self, batch_size: int, grid: tuple[int, ...], device, dtype) -> torch.Tensor | None:
        if self.position is None:
            return None
        if isinstance(self.position, FourierPositionEncoding):
            pos = self.position(batch_size, index_dims=grid, device=device, dtype=dtype)
            return self.pos_projection(pos) if self.pos_projection is not None else pos
        if len(grid) != 2 and grid != self.position.index_dims:
            raise ValueError(f"trainable positions were built for {self.position.index_dims}, got grid {grid}")
        return self.position(batch_size, index_dims=grid).to(dtype)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = self.check_input(x)
        feats, grid = self.features(x)  # [B, M, C_feat]
        pos = self.position_encoding(x.shape[0], grid, x.device, feats.dtype)
        if pos is None:
            out = feats
        elif self.config.concat_or_add_pos == "concat":
            out = torch.cat([feats, pos], dim=-1)
        else:
            out = feats + pos
        return (out, feats) if return_features else out
