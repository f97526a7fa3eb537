"""Official initialisers (Haiku): fan-in truncated normal for attention/MLP linears, std 0.02 for learned arrays."""

from __future__ import annotations

import math

import torch
from torch import nn

# std of a standard normal truncated to [-2, 2]; Haiku divides by it so the truncated draw has the asked std.
_TRUNC_STD = 0.87962566103423978


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal in [-2·std, 2·std] (Haiku ``TruncatedNormal``)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def variance_scaling_(linear: nn.Linear, scale: float = 1.0) -> None:
    """Haiku ``VarianceScaling(scale, 'fan_in', 'truncated_normal')`` for the weight, zeros for the bias."""
    fan_in = linear.weight.shape[1]
    trunc_normal_(linear.weight, math.sqrt(scale / fan_in) / _TRUNC_STD)
    if linear.bias is not None:
        linear.bias.zero_()


@torch.no_grad()
def init_official_(module: nn.Module) -> None:
    """Re-initialise every Linear and LayerNorm below ``module`` as the official code does."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            variance_scaling_(m)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
