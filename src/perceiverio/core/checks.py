"""Input validation: bad input gets a ValueError naming what was expected, never a deep torch trace."""

from __future__ import annotations

import torch


def check_features(x: object, num_channels: int, name: str = "inputs") -> torch.Tensor:
    """A float tensor ``[B, M, C]`` with B, M > 0 and C == ``num_channels``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, M, {num_channels}], got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [B, M, {num_channels}] (rank 3), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have a non-empty batch and at least one element, got shape {tuple(x.shape)}")
    if x.shape[2] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channels in the last dimension, got {x.shape[2]}")
    return x


def check_mask(mask: object, shape: tuple[int, int], name: str = "attention_mask") -> torch.Tensor | None:
    """``None`` or a ``[B, L]`` bool/integer tensor (non-zero = real element); returned as bool."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {list(shape)}, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)} (batch, length), got {list(mask.shape)}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(f"{name} must be bool or integer (1 = token, 0 = padding), got dtype {mask.dtype}")
    return mask if mask.dtype == torch.bool else mask != 0


def check_token_ids(ids: object, vocab_size: int, max_length: int, name: str = "input_ids") -> torch.Tensor:
    """An integer tensor ``[B, L]`` with B, L > 0, L <= ``max_length`` and every id in [0, vocab_size)."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, L], got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape [B, L] (rank 2), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor (token ids), got dtype {ids.dtype}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have a non-empty batch and length, got shape {tuple(ids.shape)}")
    if ids.shape[1] > max_length:
        raise ValueError(f"{name} has length {ids.shape[1]}, more than the model's max_seq_len {max_length}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return ids.long()
