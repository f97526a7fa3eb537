"""Input validation: bad input gets a ValueError naming what was expected, never a deep torch trace.

Checks of types, ranks, shapes and dtypes cost nothing and always run. Checks that read tensor *values* (token ids
in range, indices in range) make the host wait for the device and break ``torch.compile``/``torch.export`` graphs;
they run only while :func:`value_checks_enabled` is true: in eager mode by default, never while compiling or
exporting. ``set_value_checks(False)`` turns them off in eager mode too (e.g. on a GPU, after validating the data
once at the boundary: tokenizer, collators, data modules).
"""

from __future__ import annotations

import torch

_value_checks = True


def set_value_checks(enabled: bool) -> bool:
    """Turn the value-reading input checks on or off; returns the previous setting."""
    global _value_checks
    previous, _value_checks = _value_checks, bool(enabled)
    return previous


def value_checks_enabled() -> bool:
    """True in eager mode unless turned off; always False while ``torch.compile`` or ``torch.export`` traces."""
    return _value_checks and not (torch.compiler.is_compiling() or torch.compiler.is_exporting())


def check_range(values: torch.Tensor, low: int, high: int, name: str) -> None:
    """ValueError unless every value lies in ``[low, high)`` (a value-reading check: see the module docstring)."""
    if values.numel() and value_checks_enabled():
        lo, hi = int(values.min()), int(values.max())
        if lo < low or hi >= high:
            raise ValueError(f"{name} must lie in [{low}, {high}), got values in [{lo}, {hi}]")


def check_float_array(x: object, dims: tuple[str, ...], name: str, what: str = "") -> torch.Tensor:
    """A floating-point tensor with one dimension per letter of ``dims`` (e.g. ``("B", "M", "C")``), none of them
    empty; ``what`` adds what the array holds to the messages."""
    layout = f"[{', '.join(dims)}]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}{what}, got {type(x).__name__}")
    if x.dim() != len(dims):
        raise ValueError(f"{name} must have shape {layout}{what} (rank {len(dims)}), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor{what}, got dtype {x.dtype}")
    if 0 in x.shape:
        raise ValueError(f"{name} must have a non-empty batch and every dimension {layout}, got shape {tuple(x.shape)}")
    return x


def check_features(x: object, num_channels: int, name: str = "inputs") -> torch.Tensor:
    """A float tensor ``[B, M, C]`` with B, M > 0 and C == ``num_channels``."""
    check_float_array(x, ("B", "M", str(num_channels)), name)
    if x.shape[2] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channels in the last dimension, got {x.shape[2]}")
    return x


def check_mask(
    mask: object, shape: tuple[int, int], name: str = "attention_mask", like: str = "the inputs"
) -> torch.Tensor | None:
    """``None`` or a ``[B, L]`` bool/integer tensor (non-zero = real element) of the batch and length of ``like``
    (named in the message); returned as bool."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {list(shape)}, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {list(shape)} (the batch and length of {like}), got {list(mask.shape)}"
        )
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(f"{name} must be bool or integer (1 = token, 0 = padding), got dtype {mask.dtype}")
    return mask if mask.dtype == torch.bool else mask != 0


def check_indices(index: object, name: str) -> torch.Tensor:
    """An integer (not bool) tensor of rank 1 ``[K]`` or 2 ``[B, K]``, returned as int64 (torch reads uint8 and bool
    tensors as masks, not indices)."""
    if not isinstance(index, torch.Tensor) or index.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be an integer tensor of shape [K] or [B, K], got "
            f"{tuple(index.shape) if isinstance(index, torch.Tensor) else type(index).__name__}"
        )
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer indices, got dtype {index.dtype}")
    return index.long()


def check_token_ids(ids: object, vocab_size: int, max_length: int | None, name: str = "input_ids") -> torch.Tensor:
    """An integer tensor ``[B, L]`` with B, L > 0, L <= ``max_length`` (None: any length) and every id in
    [0, vocab_size), as int64."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, L], got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape [B, L] (rank 2), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor (token ids), got dtype {ids.dtype}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have a non-empty batch and length, got shape {tuple(ids.shape)}")
    if max_length is not None and ids.shape[1] > max_length:
        raise ValueError(f"{name} has length {ids.shape[1]}, more than the model's max_seq_len {max_length}")
    check_range(ids, 0, vocab_size, name)
    return ids.long()


def check_chunk_size(chunk_size: object, name: str = "chunk_size") -> int | None:
    """``None`` (no chunking) or a positive int."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {chunk_size!r}")
    return chunk_size


def check_class_ids(labels: object, batch: int, name: str = "labels", like: str = "input_ids") -> torch.Tensor:
    """Integer class ids ``[B]``, B the batch of ``like`` (range checked by the loss: -100 ignores an example)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of class ids of shape [{batch}], got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(
            f"{name} must have shape [{batch}] (one class id per example of {like}), got {list(labels.shape)}"
        )
    return labels
