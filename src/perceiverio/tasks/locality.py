"""Locality-prior initialisation of a byte MLM (``MaskedLanguageModelConfig(routing_init="local")``).

Why: a randomly initialised Perceiver IO MLM must discover two routings before its predictions use context at all:
which input bytes each latent reads (encoder cross-attention) and which latents each output query reads (decoder
cross-attention). Each routing only gets a gradient once the other exists, so small models on a CPU budget sit on a
unigram plateau for thousands of steps. This initialisation starts both routings local; the architecture and the
parameter count are unchanged and every parameter stays trainable (it is an initialisation, not a constraint).

How (C = input channels, D = latent channels, L = sequence length, N = latents):
- one sinusoid code ``S[p]`` (C channels, wavelengths 3 … 2L bytes, geometric) is written into both the input
  position table and the output query table, at the embedding scale;
- latent ``i`` holds ``γ·S[c_i]`` in its first C channels, ``c_i = (i + ½)·L/N − ½`` (evenly spaced centres);
- the encoder cross-attention's key projection reads the code channels of LN(inputs) and its query projection the
  code channels of LN(latents), times β; the decoder cross-attention the same with the roles swapped. Since
  ``S[p]·S[q]`` is a sum of cosines of ``p − q``, each latent starts attending to the bytes around its centre and
  each query to the latents around its position. Frequencies are interleaved across heads so every head sees all
  scales.

The paper's models use random initialisation (``routing_init="random"``, the default); pre-trained weights
overwrite either.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.attention import MultiHeadAttention


def sinusoid_codes(positions: torch.Tensor, num_channels: int, max_period: float) -> torch.Tensor:
    """Codes ``[P, C]`` for float positions ``[P]``: channels ``2k, 2k+1`` = ``√2·sin, √2·cos(2π p / λ_k)``,
    wavelengths ``λ_k`` geometric from 3 to ``max_period``. Each entry has RMS 1, and
    ``S[p]·S[q] = 2 Σ_k cos(2π (p − q) / λ_k)`` depends on ``p − q`` only."""
    if num_channels % 2:
        raise ValueError(f"num_channels must be even for sin/cos pairs, got {num_channels}")
    k = num_channels // 2
    wavelengths = torch.exp(torch.linspace(math.log(3.0), math.log(max_period), k))  # [K]
    angles = 2 * math.pi * positions.float()[:, None] / wavelengths  # [P, K]
    codes = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # [P, C] (sin, cos) pairs
    return codes * math.sqrt(2.0)


def head_interleave(num_channels: int, num_heads: int) -> torch.Tensor:
    """Channel order that gives head ``j`` (a contiguous slice) the frequency pairs ``j, j + h, j + 2h, …``."""
    pairs = torch.arange(num_channels // 2)
    order = torch.cat([pairs[j::num_heads] for j in range(num_heads)])
    return torch.stack([2 * order, 2 * order + 1], dim=1).flatten()  # [C]


@torch.no_grad()
def _read_code(attention: MultiHeadAttention, query_code_scale: float, num_code_channels: int) -> None:
    """Q and K projections that copy the first ``num_code_channels`` input channels, interleaved across heads.

    Head ``j`` gets its ``C / H`` code channels at the start of its own slice of the projection, so a projection
    wider than ``C`` (``qk_channels > num_input_channels``) still gives every head its share of frequencies; the
    remaining channels of each head start at zero."""
    c, h = num_code_channels, attention.num_heads
    perm = head_interleave(c, h)  # [C]: head j's code channels are perm[j*k:(j+1)*k]
    for proj, scale in ((attention.q_proj, query_code_scale), (attention.k_proj, 1.0)):
        if proj.out_features < c or proj.in_features < c:
            raise ValueError(
                f"routing_init='local' needs qk_channels >= num_input_channels ({c}), got {proj.out_features}"
            )
        k, head_width = c // h, proj.out_features // h
        rows = (torch.arange(h)[:, None] * head_width + torch.arange(k)[None]).flatten()  # [C]
        proj.weight.zero_()
        proj.weight[rows, perm] = scale
        proj.bias.zero_()


@torch.no_grad()
def local_routing_init_(model: nn.Module, beta: float = 2.0, gamma: float = 3.0, amplitude: float = 0.02) -> None:
    """Apply the locality prior to a ``MaskedLanguageModel`` in place (see the module docstring).

    ``beta``: attention logit scale of the initial routing; ``gamma``: RMS of the latents' code channels;
    ``amplitude``: RMS of the position codes (the byte embedding scale, so bytes and positions weigh alike).
    """
    cfg = model.config
    length, c = cfg.max_seq_len, cfg.num_input_channels
    n, d = cfg.encoder.num_latents, cfg.encoder.num_latent_channels
    if d < c:
        raise ValueError(f"routing_init='local' needs num_latent_channels >= num_input_channels, got {d} < {c}")
    codes = sinusoid_codes(torch.arange(length), c, 2.0 * length)  # [L, C]
    model.input_adapter.position_embedding.embeddings.copy_(amplitude * codes)
    model.output_queries.embeddings.copy_(amplitude * codes)

    centres = (torch.arange(n) + 0.5) * length / n - 0.5
    latents = model.encoder.latents  # [N, D]
    latents.normal_(0.0, 0.02)
    latents[:, :c] += gamma * sinusoid_codes(centres, c, 2.0 * length)

    _read_code(model.encoder.cross_attention.attention, beta, c)  # latents (queries) read inputs (keys)
    decoder_attention = model.decoder.cross_attention.attention
    _read_code(decoder_attention, beta, c)  # output queries read latents
