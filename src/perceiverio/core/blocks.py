"""Pre-LayerNorm Transformer blocks of Perceiver IO (paper §2, official ``CrossAttention``/``SelfAttention``).

cross:  x = Attn(LN_q(q), LN_kv(kv)) [+ q];  x = x + MLP(LN(x))
self:   x = x + Attn(LN(x), LN(x));          x = x + MLP(LN(x))
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import MultiHeadAttention
from .config import Activation, Masking, check_choice
from .cpu_attention import needs_grad

LAYER_NORM_EPS = 1e-5
KV_CHUNK_SIZE = 4096  # CPU inference reads longer key/value arrays in chunks: O(chunk) memory, cache-sized working set


def checkpointed(owner: nn.Module, fn: Callable) -> Callable:
    """``fn``, recomputed in backward instead of keeping its activations (non-reentrant checkpoint) when
    ``owner.gradient_checkpointing`` is set and ``owner`` trains with gradients enabled; else ``fn`` itself."""
    if owner.gradient_checkpointing and owner.training and torch.is_grad_enabled():
        return functools.partial(checkpoint, fn, use_reentrant=False)
    return fn


class SquaredReLU(nn.Module):
    """relu(x)², the MLP activation of Perceiver AR (official ``activation_name='sq_relu'``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


class MLP(nn.Module):
    """Linear(C → w·C) → activation (GELU, tanh-GELU or squared ReLU) → Linear(w·C → C)."""

    def __init__(
        self, num_channels: int, widening_factor: int = 1, activation: Activation = "gelu_tanh", dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_choice(activation, typing.get_args(Activation), "activation")
        self.fc1 = nn.Linear(num_channels, widening_factor * num_channels)
        if activation == "sq_relu":
            self.act: nn.Module = SquaredReLU()
        else:
            self.act = nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none")
        self.fc2 = nn.Linear(widening_factor * num_channels, num_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


def _add_mlp(block: nn.Module, channels: int, widening_factor: int, activation: Activation, dropout: float) -> None:
    """The second half every block shares: ``mlp_norm``, ``mlp`` and the attention output's ``dropout``."""
    block.mlp_norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)
    block.mlp = MLP(channels, widening_factor, activation, dropout)
    block.dropout = nn.Dropout(dropout)


class CrossAttentionBlock(nn.Module):
    """Queries attend to a key/value array; the output has the query width.

    ``num_qk_channels`` defaults to the key/value width (official ``shape_for_attn='kv'``), ``num_v_channels`` to
    qk. ``use_query_residual`` adds the *un-normalised* queries to the attention output. On CPU without gradients,
    key/value arrays longer than ``kv_chunk_size`` are normalised, projected and attended chunk by chunk
    (``MultiHeadAttention.forward_kv_chunks``); other devices, and ``torch.export`` graphs (whose M may be dynamic,
    and whose ONNX translation of the log-sum-exp is wrong), attend them in one fused pass.
    """

    def __init__(
        self,
        num_q_channels: int,
        num_kv_channels: int,
        num_heads: int = 1,
        num_qk_channels: int | None = None,
        num_v_channels: int | None = None,
        widening_factor: int = 1,
        use_query_residual: bool = True,
        dropout: float = 0.0,
        activation: Activation = "gelu_tanh",
        masking: Masking = "official",
    ) -> None:
        super().__init__()
        qk = num_qk_channels if num_qk_channels is not None else num_kv_channels
        v = num_v_channels if num_v_channels is not None else qk
        self.q_norm = nn.LayerNorm(num_q_channels, eps=LAYER_NORM_EPS)
        self.kv_norm = nn.LayerNorm(num_kv_channels, eps=LAYER_NORM_EPS)
        self.attention = MultiHeadAttention(num_q_channels, num_kv_channels, num_heads, qk, v, num_q_channels, masking)
        _add_mlp(self, num_q_channels, widening_factor, activation, dropout)
        self.use_query_residual = use_query_residual
        self.kv_chunk_size: int | None = KV_CHUNK_SIZE  # None: always one pass (as on every non-CPU device)

    def forward(
        self,
        x_q: torch.Tensor,  # [B, O, Cq]
        x_kv: torch.Tensor,  # [B, M, Ckv]
        key_mask: torch.Tensor | None = None,  # [B, M]
        query_mask: torch.Tensor | None = None,  # [B, O]
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:  # [B, O, Cq] (, [B, h, O, M] float32)
        """The block's output; ``return_attention=True`` also returns the cross-attention probabilities (the
        output unchanged: on the chunked path they are computed beside it, over all M keys at once)."""
        chunk = self.kv_chunk_size
        attention = None
        if (
            chunk
            and not torch.compiler.is_exporting()  # exported graphs attend in one pass: no guard on M, no LSE op
            and x_kv.shape[1] > chunk
            and x_kv.device.type == "cpu"
            and not needs_grad(x_q, x_kv, *self.parameters())
            and (self.dropout.p == 0 or not self.training)
        ):
            a = self.attention.forward_kv_chunks(self.q_norm(x_q), x_kv, self.kv_norm, chunk, key_mask, query_mask)
            if return_attention:
                attention = self.attention.probabilities(self.q_norm(x_q), self.kv_norm(x_kv), key_mask, query_mask)
        elif return_attention:
            a, attention = self.attention(self.q_norm(x_q), self.kv_norm(x_kv), key_mask, query_mask, True)
            a = self.dropout(a)
        else:
            a = self.dropout(self.attention(self.q_norm(x_q), self.kv_norm(x_kv), key_mask, query_mask))
        x = x_q + a if self.use_query_residual else a
        x = x + self.mlp(self.mlp_norm(x))
        return (x, attention) if return_attention else x


class SelfAttentionBlock(nn.Module):
    """Latent self-attention; qk defaults to the latent width D, v to qk, and v must equal D."""

    def __init__(
        self,
        num_channels: int,
        num_heads: int = 8,
        num_qk_channels: int | None = None,
        num_v_channels: int | None = None,
        widening_factor: int = 1,
        dropout: float = 0.0,
        activation: Activation = "gelu_tanh",
        masking: Masking = "official",
    ) -> None:
        super().__init__()
        qk = num_qk_channels if num_qk_channels is not None else num_channels
        v = num_v_channels if num_v_channels is not None else qk
        if v != num_channels:
            raise ValueError(f"self-attention v channels ({v}) must equal the latent channels ({num_channels})")
        self.norm = nn.LayerNorm(num_channels, eps=LAYER_NORM_EPS)
        self.attention = MultiHeadAttention(num_channels, num_channels, num_heads, qk, v, v, masking)
        _add_mlp(self, num_channels, widening_factor, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, N, D]
        h = self.norm(x)
        x = x + self.dropout(self.attention(h, h))
        return x + self.mlp(self.mlp_norm(x))
