"""Causal pre-LayerNorm blocks with rotary positions and key/value caching (Perceiver AR, official ``Attention``,
``CrossAttention``, ``SelfAttention``).

cross:  x = Attn(LN_q(z), LN_kv(e)) + z;   x = x + MLP(LN(x))
self:   x = x + Attn(LN(x), LN(x));        x = x + MLP(LN(x))

Keys and values are computed apart from the queries (:meth:`keys_values`, rotated at their positions), so a caller
can keep them and append new ones: a cached step costs attention of one query over the kept keys. Attention runs
through :func:`perceiverio.core.attention.attend` (``F.scaled_dot_product_attention`` on every device).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import attend
from .blocks import LAYER_NORM_EPS, MLP
from .causal import Rotation, rotary_angles, rotate, rotated_channels
from .config import Activation

KeyValues = tuple[torch.Tensor, torch.Tensor]  # ([B, h, M, d], [B, h, M, e]), keys rotated


class KeyValueCache:
    """Keys ``[B, h, T, d]`` and values ``[B, h, T, e]`` kept in buffers of ``capacity`` positions, so appending a
    token writes in place instead of copying all T kept positions (``torch.cat``), which at long contexts costs
    more than the step's arithmetic. :meth:`extend` returns views of the first T positions; they stay valid until
    the next ``extend``. The buffers double when full."""

    def __init__(self, kv: KeyValues, capacity: int = 0) -> None:
        k, v = kv
        self.length = k.shape[2]
        self.k = k.new_empty(*k.shape[:2], max(capacity, self.length), k.shape[3])
        self.v = v.new_empty(*v.shape[:2], max(capacity, self.length), v.shape[3])
        self.k[:, :, : self.length], self.v[:, :, : self.length] = k, v

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> KeyValues:  # [B, h, t, d], [B, h, t, e]
        """Append ``t`` positions; all kept keys/values ``([B, h, T + t, d], [B, h, T + t, e])``."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:  # grow: one copy, amortised over as many steps as were kept
            grown = KeyValueCache(self.keys_values(), 2 * end)
            self.k, self.v = grown.k, grown.v
        self.k[:, :, self.length : end], self.v[:, :, self.length : end] = k, v
        self.length = end
        return self.keys_values()

    def keys_values(self) -> KeyValues:
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class RotaryAttention(nn.Module):
    """Multi-head attention whose queries and keys are rotated at their positions (first ``rotary_fraction`` of
    each head's q/k channels); Q, K, V and the output projection have biases."""

    def __init__(
        self,
        num_q_channels: int,
        num_kv_channels: int,
        num_heads: int,
        num_qk_channels: int,
        num_v_channels: int,
        num_output_channels: int,
        rotary_fraction: float,
        max_wavelength: float,
    ) -> None:
        super().__init__()
        for name, channels in (("qk", num_qk_channels), ("v", num_v_channels)):
            if channels % num_heads != 0:
                raise ValueError(f"{name} channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.num_rotated = rotated_channels(num_qk_channels // num_heads, rotary_fraction)
        self.max_wavelength = max_wavelength
        self.q_proj = nn.Linear(num_q_channels, num_qk_channels)
        self.k_proj = nn.Linear(num_kv_channels, num_qk_channels)
        self.v_proj = nn.Linear(num_kv_channels, num_v_channels)
        self.o_proj = nn.Linear(num_v_channels, num_output_channels)

    def rotation(self, positions: torch.Tensor) -> Rotation:  # [B|1, T] -> ([B|1, 1, T, r/2], ...)
        """The rotary angles of ``positions`` for this attention (compute once, pass to every call at them)."""
        return rotary_angles(positions, self.num_rotated, self.max_wavelength)

    def keys_values(self, x_kv: torch.Tensor, rotation: Rotation) -> KeyValues:  # [B, M, C], angles of M positions
        """Rotated keys ``[B, h, M, d]`` and values ``[B, h, M, e]`` of an (already normalised) key/value array."""
        return rotate(self._split(self.k_proj(x_kv)), rotation), self._split(self.v_proj(x_kv))

    def forward(
        self,
        x_q: torch.Tensor,  # [B, O, Cq], normalised
        q_rotation: Rotation,  # the angles of the O query positions
        kv: KeyValues,
        mask: torch.Tensor | None = None,  # bool [B|1, 1, O, M], True = attend
        is_causal: bool = False,  # O == M and no mask: query i sees keys <= i (the fused kernel's mask)
    ) -> torch.Tensor:  # [B, O, out]
        q = rotate(self._split(self.q_proj(x_q)), q_rotation)
        out = attend(q, kv[0], kv[1], mask, is_causal)  # [B, h, O, e]
        return self.o_proj(out.transpose(1, 2).flatten(2))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, h·c] -> [B, h, T, c]
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)


class CausalCrossAttentionBlock(nn.Module):
    """The latents (queries, width D) read the inputs (width C); qk and v widths are C (official
    ``shape_for_attn='kv'``), the output width D; the un-normalised queries are added back (query residual)."""

    def __init__(
        self,
        num_q_channels: int,
        num_kv_channels: int,
        num_heads: int,
        widening_factor: int,
        dropout: float,
        activation: Activation,
        rotary_fraction: float,
        max_wavelength: float,
    ) -> None:
        super().__init__()
        c = num_kv_channels
        self.q_norm = nn.LayerNorm(num_q_channels, eps=LAYER_NORM_EPS)
        self.kv_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.attention = RotaryAttention(
            num_q_channels, c, num_heads, c, c, num_q_channels, rotary_fraction, max_wavelength
        )
        self.dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(num_q_channels, eps=LAYER_NORM_EPS)
        self.mlp = MLP(num_q_channels, widening_factor, activation, dropout)

    def rotation(self, positions: torch.Tensor) -> Rotation:  # [B|1, T]
        """The rotary angles of ``positions`` (for :meth:`keys_values` and :meth:`forward`)."""
        return self.attention.rotation(positions)

    def keys_values(self, x_kv: torch.Tensor, rotation: Rotation) -> KeyValues:  # [B, M, C], angles of M positions
        return self.attention.keys_values(self.kv_norm(x_kv), rotation)

    def forward(
        self, z: torch.Tensor, rotation: Rotation, kv: KeyValues, mask: torch.Tensor | None = None
    ) -> torch.Tensor:  # [B, O, D], angles of the O positions -> [B, O, D]
        x = z + self.dropout(self.attention(self.q_norm(z), rotation, kv, mask))
        return x + self.mlp(self.mlp_norm(x))


class CausalSelfAttentionBlock(nn.Module):
    """Causal latent self-attention; ``past`` keys/values (earlier latents, kept from previous calls) are attended
    before the new ones and the new ones are appended to it in place; returns the output and all keys/values."""

    def __init__(
        self,
        num_channels: int,
        num_heads: int,
        widening_factor: int,
        dropout: float,
        activation: Activation,
        rotary_fraction: float,
        max_wavelength: float,
    ) -> None:
        super().__init__()
        d = num_channels
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.attention = RotaryAttention(d, d, num_heads, d, d, d, rotary_fraction, max_wavelength)
        self.dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.mlp = MLP(d, widening_factor, activation, dropout)

    def rotation(self, positions: torch.Tensor) -> Rotation:  # [B|1, T]
        """The rotary angles of ``positions`` (for :meth:`forward`; the same for every layer of one model)."""
        return self.attention.rotation(positions)

    def forward(
        self,
        z: torch.Tensor,  # [B, O, D]
        rotation: Rotation,  # the angles of the O positions
        past: KeyValueCache | None = None,  # P kept positions ([B, h, P, d], [B, h, P, d])
        mask: torch.Tensor | None = None,  # bool [B|1, 1, O, P + O]
        is_causal: bool = False,  # no past and no mask: plain causal attention among the O latents
    ) -> tuple[torch.Tensor, KeyValues]:
        h = self.norm(z)
        k, v = self.attention.keys_values(h, rotation)
        if past is not None:
            k, v = past.extend(k, v)
        x = z + self.dropout(self.attention(h, rotation, (k, v), mask, is_causal))
        return x + self.mlp(self.mlp_norm(x)), (k, v)
