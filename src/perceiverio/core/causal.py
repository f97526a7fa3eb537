"""Pure functions of causal (autoregressive) attention: the right-aligned causal mask and rotary position embedding.

Shapes use the paper's letters: B examples, h heads, O queries, M keys, d head width, T positions.

Right-aligned masking (Perceiver AR, Hawthorne et al. 2022): the O queries stand for the *last* O of the M key
positions, so query i sits at key position ``M - O + i`` and sees keys ``j <= M - O + i``. With O == M this is the
usual lower-triangular mask. Both are built from ``arange`` alone (no tensor values read, no host sync).

Rotary embedding (Su et al. 2021) as the official Perceiver AR code applies it: the first ``r`` channels of every
head (``r`` = the even number at or below ``fraction · d``) are rotated in interleaved pairs ``(2i, 2i+1)`` by the
angle ``position · ω_i``, with ``ω_i = max_wavelength^(-i / (r/2 - 1))`` for ``i = 0 .. r/2 - 1`` (the official
``linspace(0, r/2, r/2) · 2/r`` exponents; ``ω_0 = 1``); the other channels pass unchanged. A rotated query and
key have a dot product that depends only on the difference of their positions.
"""

from __future__ import annotations

import math

import torch


def right_aligned_causal_mask(
    num_queries: int,
    num_keys: int,
    key_mask: torch.Tensor | None = None,  # [B, M] bool, True = real key
    device: torch.device | str | None = None,
) -> torch.Tensor:  # [1 or B, 1, O, M] bool, True = attend
    """Query ``i`` sees key ``j`` iff ``j <= num_keys - num_queries + i`` (and ``key_mask[b, j]``).

    A query always sees the key at its own position, even a masked one, so no row is empty (the fused kernels would
    give NaN): the output of a query on a padding position is meaningless and must be ignored by the caller.
    """
    if not 0 < num_queries <= num_keys:
        raise ValueError(f"num_queries must lie in [1, num_keys={num_keys}], got {num_queries}")
    query_positions = torch.arange(num_keys - num_queries, num_keys, device=device)  # [O]
    key_positions = torch.arange(num_keys, device=device)  # [M]
    causal = key_positions[None, :] <= query_positions[:, None]  # [O, M]
    if key_mask is None:
        return causal[None, None]
    own = key_positions[None, :] == query_positions[:, None]  # [O, M]
    return ((causal[None] & key_mask[:, None, :]) | own[None])[:, None]  # [B, 1, O, M]


def rotated_channels(head_channels: int, fraction: float) -> int:
    """The number of rotated channels of a head: the even number at or below ``fraction · head_channels``."""
    return math.floor(head_channels * fraction / 2) * 2


def rotary_frequencies(num_rotated: int, max_wavelength: float) -> torch.Tensor:  # [r/2] float64
    """``ω_i`` of the module docstring for the ``num_rotated`` (even, > 0) rotated channels."""
    bands = num_rotated // 2
    exponents = torch.linspace(0, bands, bands, dtype=torch.float64) * (2.0 / num_rotated)  # official spacing
    return float(max_wavelength) ** -exponents


Rotation = tuple[torch.Tensor, torch.Tensor]  # (cos, sin) [B|1, 1, T, r/2] float32: the angles of T positions


def rotary_angles(positions: torch.Tensor, num_rotated: int, max_wavelength: float) -> Rotation:
    """``(cos θ, sin θ)`` with ``θ = positions · ω_i`` for ``positions [B|1, T]``: computed once per set of
    positions and shared by every layer that rotates the same number of channels (:func:`rotate`)."""
    omega = rotary_frequencies(num_rotated, max_wavelength).to(device=positions.device, dtype=torch.float32)  # [r/2]
    angles = positions.to(torch.float32)[:, None, :, None] * omega  # [B|1, 1, T, r/2]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rotation: Rotation) -> torch.Tensor:  # [B, h, T, d] -> [B, h, T, d]
    """Rotate channel pairs ``(2i, 2i+1)`` of the first ``r`` channels (``r/2`` = the angles' last size):
    ``(a, b) -> (a cos θ - b sin θ, b cos θ + a sin θ)``; the remaining channels unchanged."""
    cos, sin = rotation
    num_rotated = 2 * cos.shape[-1]
    if num_rotated == 0:
        return x
    pairs = x[..., :num_rotated].float().unflatten(-1, (num_rotated // 2, 2))  # [B, h, T, r/2, 2]
    a, b = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)  # [B, h, T, r]
    return torch.cat((rotated.to(x.dtype), x[..., num_rotated:]), dim=-1)


def apply_rotary(
    x: torch.Tensor,  # [B, h, T, d]
    positions: torch.Tensor,  # [B or 1, T] integer or float positions
    num_rotated: int,
    max_wavelength: float,
) -> torch.Tensor:  # [B, h, T, d]
    """:func:`rotate` by the angles of ``positions`` (:func:`rotary_angles`)."""
    if num_rotated == 0:
        return x
    return rotate(x, rotary_angles(positions, num_rotated, max_wavelength))
