"""A class label as one Perceiver IO token (official ``OneHotPreprocessor`` / ``ClassificationPostprocessor``).

Input: one-hot (or any per-class weights) ``[B, K]`` -> one token ``[B, 1, K]`` with no position encoding; integer
class ids ``[B]`` are one-hot encoded first. Output: the single decoded row through ``Linear(E -> K)`` -> logits
``[B, K]``. The label's output query is a learned vector (``num_query_channels``, 1024 in the Kinetics model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_range
from ..core.config import check_positive


@dataclass(frozen=True)
class LabelAdapterConfig:
    """Label modality: ``num_classes`` K and the width of its learned decoder query."""

    num_classes: int = 700
    num_query_channels: int = 1024

    def __post_init__(self) -> None:
        check_positive(self, "num_classes", "num_query_channels")

    @property
    def num_input_channels(self) -> int:
        return self.num_classes


class LabelInputAdapter(nn.Module):
    """``[B, K]`` float (one-hot) or ``[B]`` integer class ids -> ``[B, 1, K]`` (no parameters)."""

    def __init__(self, config: LabelAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.num_input_channels = config.num_classes

    def check_input(self, x: object, name: str = "label") -> torch.Tensor:
        """``x`` as one-hot float ``[B, K]`` (integer class ids ``[B]`` are one-hot encoded), else a ValueError
        naming ``name``."""
        k = self.config.num_classes
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a tensor: one-hot [B, {k}] or class ids [B], got {type(x).__name__}")
        if x.dim() == 1 and not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch.bool:
            if x.shape[0] == 0:
                raise ValueError(f"{name} must have a non-empty batch, got shape {tuple(x.shape)}")
            check_range(x, 0, k, f"{name} (class ids)")
            return F.one_hot(x.long(), k).float()
        if x.dim() != 2 or x.shape[1] != k:
            raise ValueError(f"{name} must be one-hot [B, {k}] or integer class ids [B], got shape {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            raise ValueError(f"{name} of shape [B, {k}] must be floating point (one-hot), got dtype {x.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must have a non-empty batch, got shape {tuple(x.shape)}")
        return x

    def forward(self, x: torch.Tensor, return_features: bool = False):
        out = self.check_input(x)[:, None, :]  # [B, 1, K]
        return (out, out) if return_features else out


class LabelOutputAdapter(nn.Module):
    """Decoder output ``[B, 1, E]`` -> logits ``[B, K]`` (Linear, then the first row)."""

    def __init__(self, num_decoder_channels: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_decoder_channels, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)[:, 0]
