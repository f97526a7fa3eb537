"""Multi-head QKV attention of Perceiver IO, with the official mask semantics.

Per head, softmax(Q Kᵀ / sqrt(d)) V with d the q/k head width; heads are contiguous channel slices, and Q, K, V and
the output projection all have biases. Shapes use the paper's letters: B examples, O queries, M keys/values,
h heads, d and e the q/k and v head widths.

One fused path, ``F.scaled_dot_product_attention``, on every device; on CPU, :func:`attend` falls back to
:mod:`perceiverio.core.cpu_attention` where that is faster (inference in bfloat16/float16, q/k and v head widths that
differ). Masks are built without reading tensor values, so no forward synchronises with the device or breaks a
``torch.compile`` graph.

Attention maps: ``MultiHeadAttention.forward(..., return_attention=True)`` (or :meth:`MultiHeadAttention.probabilities`)
also returns the probabilities ``[B, h, O, M]``, computed explicitly (:func:`attention_probabilities`) from the same
Q and K, while the output still comes from the fused path: it is bitwise the output without maps. Nothing of this
runs unless asked.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_attention
from .config import Masking, check_choice


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V: ``q [B, h, O, d]``, ``k [B, h, M, d]``, ``v [B, h, M, e]`` -> ``[B, h, O, e]``.

    ``attn_mask``: bool (True = attend) or an additive float bias, broadcastable to ``[B, h, O, M]``; no row may be
    fully masked. ``is_causal`` (O == M, no ``attn_mask``): query i sees keys <= i, through the fused kernel's own
    causal mask, which skips the masked blocks. No path keeps an ``[O, M]`` tensor for backward. While
    ``torch.export`` traces, SDPA always (the CPU paths size their chunks from B and M, which would fix the batch
    size and length of the exported graph).
    """
    if is_causal:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if q.device.type == "cpu" and not torch.compiler.is_exporting() and cpu_attention.beats_sdpa(q, k, v):
        return cpu_attention.attend(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def check_flag(value: object, name: str = "return_attention") -> bool:
    """``value`` if it is a bool, else ValueError naming ``name`` (0/1 or "yes" are not accepted)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def attention_probabilities(
    q: torch.Tensor,  # [B, h, O, d]
    k: torch.Tensor,  # [B, h, M, d]
    attn_mask: torch.Tensor | None = None,  # bool [B, 1, 1, M] (True = attend) or additive float bias
    wipe: torch.Tensor | None = None,  # [B, O] or [B, 1] bool: rows whose output is zeroed
) -> torch.Tensor:  # [B, h, O, M] float32
    """softmax(Q Kᵀ / sqrt(d)) in float32, with the masks that :class:`MultiHeadAttention` gives the fused kernel.

    A masked key (bool mask False) gets probability exactly 0; with an additive bias (transformers masking,
    ``finfo.min``) the probability is what the softmax makes of it (0 next to any unmasked key, uniform over all keys
    in a fully masked row). Rows in ``wipe`` (official masking: examples without any real key, masked queries) are
    all zeros, as the attention output of those rows is zeroed. Every other row sums to 1.
    """
    scores = torch.matmul(q.float() * q.shape[-1] ** -0.5, k.float().transpose(-1, -2))  # [B, h, O, M]
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.float()
    probs = scores.softmax(dim=-1)
    if wipe is not None:
        probs = probs.masked_fill(wipe[:, None, :, None], 0.0)  # [B, 1, O or 1, 1]
    return probs


class MultiHeadAttention(nn.Module):
    """out = o_proj(concat_heads(softmax(Q Kᵀ / sqrt(d)) V)), with Q = q_proj(x_q), K = k_proj(x_kv), V = v_proj(x_kv).

    Args:
        num_q_channels: width of the query input.
        num_kv_channels: width of the key/value input.
        num_heads: heads; qk and v channels must both be divisible by it.
        num_qk_channels, num_v_channels, num_output_channels: projection widths (resolved by the caller).
        masking: ``"official"`` or ``"transformers"`` (see :data:`perceiverio.core.config.Masking`).
    """

    def __init__(
        self,
        num_q_channels: int,
        num_kv_channels: int,
        num_heads: int,
        num_qk_channels: int,
        num_v_channels: int,
        num_output_channels: int,
        masking: Masking = "official",
    ) -> None:
        super().__init__()
        for name, channels in (("qk", num_qk_channels), ("v", num_v_channels)):
            if channels % num_heads != 0:
                raise ValueError(f"{name} channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.masking = check_choice(masking, typing.get_args(Masking), "masking")
        self.q_proj = nn.Linear(num_q_channels, num_qk_channels)
        self.k_proj = nn.Linear(num_kv_channels, num_qk_channels)
        self.v_proj = nn.Linear(num_kv_channels, num_v_channels)
        self.o_proj = nn.Linear(num_v_channels, num_output_channels)

    def forward(
        self,
        x_q: torch.Tensor,  # [B, O, Cq]
        x_kv: torch.Tensor,  # [B, M, Ckv]
        key_mask: torch.Tensor | None = None,  # [B, M] bool, True = real element
        query_mask: torch.Tensor | None = None,  # [B, O] bool, True = real query
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:  # [B, O, out] (, [B, h, O, M] float32)
        """The attention output; with ``return_attention=True`` also its probabilities (see
        :func:`attention_probabilities`), the output itself unchanged (same fused computation)."""
        q = self._split_heads(self.q_proj(x_q))  # [B, h, O, d]
        k = self._split_heads(self.k_proj(x_kv))  # [B, h, M, d]
        v = self._split_heads(self.v_proj(x_kv))  # [B, h, M, e]
        attn_mask, wipe = self._masks(key_mask, query_mask, q.dtype)
        out = self._merge_and_project(attend(q, k, v, attn_mask), wipe)
        if return_attention:
            return out, attention_probabilities(q, k, attn_mask, wipe)
        return out

    def probabilities(
        self,
        x_q: torch.Tensor,  # [B, O, Cq]
        x_kv: torch.Tensor,  # [B, M, Ckv]
        key_mask: torch.Tensor | None = None,  # [B, M]
        query_mask: torch.Tensor | None = None,  # [B, O]
    ) -> torch.Tensor:  # [B, h, O, M] float32
        """The attention probabilities of ``forward(x_q, x_kv, key_mask, query_mask)`` alone (no values, no
        output): what the chunked paths use, whose outputs are computed without ever holding them."""
        q = self._split_heads(self.q_proj(x_q))  # [B, h, O, d]
        k = self._split_heads(self.k_proj(x_kv))  # [B, h, M, d]
        attn_mask, wipe = self._masks(key_mask, query_mask, q.dtype)
        return attention_probabilities(q, k, attn_mask, wipe)

    def forward_kv_chunks(
        self,
        x_q: torch.Tensor,  # [B, O, Cq], already normalised
        x_kv: torch.Tensor,  # [B, M, Ckv], raw: ``kv_transform`` is applied chunk by chunk
        kv_transform: Callable[[torch.Tensor], torch.Tensor],
        chunk_size: int,
        key_mask: torch.Tensor | None = None,  # [B, M]
        query_mask: torch.Tensor | None = None,  # [B, O]
    ) -> torch.Tensor:  # [B, O, out]
        """``forward(x_q, kv_transform(x_kv), ...)`` for huge M on CPU, reading ``chunk_size`` inputs at a time.

        Each chunk's inputs are transformed, projected and folded into a running softmax in float32
        (:func:`perceiverio.core.cpu_attention.attend_kv_chunks`), so memory is O(chunk), not O(M), and the working
        set stays in cache. Same result as ``forward`` up to float rounding. For inference: the running state is not
        built for backward. On other devices this is one ``forward`` pass (SDPA never materialises the scores).
        """
        if x_q.device.type != "cpu":
            return self.forward(x_q, kv_transform(x_kv), key_mask, query_mask)
        q = self._split_heads(self.q_proj(x_q))  # [B, h, O, d]
        if self.masking == "transformers" and key_mask is not None:
            # finfo.min on every key of a fully masked example makes its scores equal: it attends uniformly to all
            # keys. Zero queries with every key visible do the same, and chunks combine them exactly.
            empty = ~key_mask.any(dim=-1)  # [B]
            q = q.masked_fill(empty[:, None, None, None], 0.0)
            keep, wipe = (key_mask | empty[:, None])[:, None, None, :], None  # [B, 1, 1, M]
        else:
            keep, wipe = self._masks(key_mask, query_mask, q.dtype)  # bool [B, 1, 1, M] in official masking

        def keys_values(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [B, c, Ckv] -> [B, h, c, d|e]
            x = kv_transform(x)
            return self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))

        out = cpu_attention.attend_kv_chunks(q, x_kv, keys_values, chunk_size, keep)  # [B, h, O, e] float32
        return self._merge_and_project(out.to(q.dtype), wipe)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, h·c] -> [B, h, T, c]
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def _merge_and_project(self, out: torch.Tensor, wipe: torch.Tensor | None) -> torch.Tensor:
        out = out.transpose(1, 2).flatten(2)  # [B, h, O, e] -> [B, O, h·e]
        if wipe is not None:
            out = out.masked_fill(wipe.unsqueeze(-1), 0.0)
        return self.o_proj(out)

    def _masks(
        self, key_mask: torch.Tensor | None, query_mask: torch.Tensor | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(attention mask ``[B, 1, 1, M]`` or None, rows to zero ``[B, O]`` or ``[B, 1]`` or None); reads no values.

        official: masked keys are excluded; a row with no visible key (fully masked example, masked query) gets a
        zero weighted sum. Such examples attend to every key (the kernels would give NaN) and are zeroed after.
        transformers: ``finfo(dtype).min`` is added to masked keys; query masks are ignored.
        """
        if key_mask is None:
            return None, (None if query_mask is None or self.masking == "transformers" else ~query_mask)
        if self.masking == "transformers":
            bias = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
            return bias.masked_fill(~key_mask, torch.finfo(dtype).min)[:, None, None, :], None
        empty = ~key_mask.any(dim=-1, keepdim=True)  # [B, 1]
        wipe = empty if query_mask is None else empty | ~query_mask
        return (key_mask | empty)[:, None, None, :], wipe
