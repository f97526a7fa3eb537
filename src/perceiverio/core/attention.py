"""Multi-head QKV attention on ``F.scaled_dot_product_attention``, with official Perceiver IO mask semantics.

softmax(Q Kᵀ / sqrt(d_qk per head)) V, heads as contiguous channel slices, then an output projection. Q, K, V and
the output projection all have biases. Only the key mask enters the fused kernel; query masking and fully masked rows
are handled by zeroing rows of the weighted sum, which is what DeepMind's code does.

On CPU (see ``attend``): inference in bfloat16/float16 (autocast included) runs as two GEMMs per chunk of queries,
since PyTorch's fused CPU kernel reaches 40-190 GFLOP/s there and the GEMMs 1.2-4.5× that (docs/benchmarks.md);
so does inference with q/k and v head widths that differ (the fused CPU kernel needs one width, and PyTorch's
fallback would hold every [O, M] score at once). The chunks bound the score block to
``LOW_PRECISION_SCORE_BUDGET`` elements. Training pads to one head width so that the fused kernel, which keeps no
[O, M] probabilities for backward, always applies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import Masking, check_choice

LOW_PRECISION_SCORE_BUDGET = 2**25  # elements of one [B, h, O_chunk, M] score block (64 MiB in bfloat16)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                      budget: int = LOW_PRECISION_SCORE_BUDGET) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V with explicit matmuls, ``budget`` score elements at a time.

    ``q [B, h, O, d]``, ``k [B, h, M, d]``, ``v [B, h, M, e]``; ``attn_mask``: bool ``[B, 1, 1, M]`` (True = attend)
    or an additive float bias broadcastable to the scores. Rows must not be fully masked.
    """
    b, h, o, d = q.shape
    m = k.shape[-2]
    chunk = max(1, budget // max(1, b * h * m))
    q = q * d**-0.5  # scale O·d entries rather than O·M scores
    kt = k.transpose(-1, -2)  # [B, h, d, M]
    outs = []
    for start in range(0, o, chunk):
        scores = torch.matmul(q[:, :, start:start + chunk], kt)  # [B, h, c, M]
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                      else scores + attn_mask)
        outs.append(torch.matmul(scores.softmax(dim=-1), v))  # [B, h, c, e]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V through the fastest exact path that keeps no ``[O, M]`` tensor for backward.

    On CPU: inference in low precision, or with different q/k and v head widths (which the fused CPU kernel does
    not take), runs as chunked GEMMs; training pads the narrower head width with zeros so that the fused kernel
    applies (its backward recomputes the probabilities instead of saving them). Elsewhere: the fused kernels.
    """
    dq, dv = q.shape[-1], v.shape[-1]
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    if not _needs_grad(q, k, v) and (dq != dv or q.dtype in (torch.bfloat16, torch.float16)):
        return chunked_attention(q, k, v, attn_mask)
    if dq == dv:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    width = max(dq, dv)  # zero channels add nothing to Q Kᵀ, and padded V channels are cut off
    q, k, v = (F.pad(t, (0, width - t.shape[-1])) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=dq**-0.5)[..., :dv]


# PyTorch's fused CPU kernel, which also returns the log-sum-exp that chunks need to be combined
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


class _OnlineSoftmax:
    """softmax(Q Kᵀ / sqrt(d)) V over key/value chunks that arrive one at a time (float32 running state).

    Each chunk gives its own attention output and log-sum-exp of scores (the fused CPU kernel when ``fused``,
    else two GEMMs); outputs are combined with weights exp(lse_chunk − lse_total), so the result equals one
    softmax over all keys. A chunk in which an example has no unmasked key gets weight 0.
    """

    def __init__(self, fused: bool) -> None:
        self.fused = fused
        self.lse: torch.Tensor | None = None  # [B, h, O, 1]
        self.acc: torch.Tensor | None = None  # [B, h, O, v/h]

    def add(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
        dq, dv = q.shape[-1], v.shape[-1]
        has_key = None
        if mask is not None and mask.dtype == torch.bool:
            has_key = mask.any(dim=-1, keepdim=True)  # [B, 1, 1, 1]
            mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, float("-inf"))
        if self.fused:
            width = max(dq, dv)  # the kernel needs one head width: zero channels change nothing
            # float32: PyTorch's CPU kernel is faster in float32 than in bfloat16 (docs/benchmarks.md)
            qp, kp, vp = (F.pad(t.float(), (0, width - t.shape[-1])) for t in (q, k, v))
            out, lse = _FLASH_CPU(qp, kp, vp, attn_mask=mask, scale=dq**-0.5)
            out, lse = out[..., :dv], lse.unsqueeze(-1)  # [B, h, O, v/h], [B, h, O, 1]: float32 already
        else:
            scores = torch.matmul(q * dq**-0.5, k.transpose(-1, -2)).float()  # [B, h, O, c]
            if mask is not None:
                scores = scores + mask
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            p = torch.exp(scores - lse.masked_fill(torch.isinf(lse), 0.0))
            out = torch.matmul(p.to(v.dtype), v).float()
        if has_key is not None:
            lse = lse.masked_fill(~has_key, float("-inf"))
            out = out.masked_fill(~has_key, 0.0)
        if self.lse is None:
            self.lse, self.acc = lse, out
            return
        total = torch.logaddexp(self.lse, lse)
        safe = total.masked_fill(torch.isinf(total), 0.0)
        self.acc = self.acc * torch.exp(self.lse - safe) + out * torch.exp(lse - safe)
        self.lse = total

    def result(self) -> torch.Tensor:
        # ``add`` keeps ``acc`` normalised by everything seen so far (an example without any key stays 0)
        return self.acc


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class MultiHeadAttention(nn.Module):
    """Q = Linear(q → qk), K = Linear(kv → qk), V = Linear(kv → v), out = Linear(v → out).

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
        self.masking = check_choice(masking, ("official", "transformers"), "masking")
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
    ) -> torch.Tensor:  # [B, O, out]
        b, o, _ = x_q.shape
        h = self.num_heads
        q = self.q_proj(x_q).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, O, qk/h]
        k = self.k_proj(x_kv).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, M, qk/h]
        v = self.v_proj(x_kv).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, M, v/h]

        attn_mask, wipe = self._masks(key_mask, query_mask, q.dtype)
        out = attend(q, k, v, attn_mask)  # [B, h, O, v/h]
        out = out.transpose(1, 2).reshape(b, o, -1)  # [B, O, v]
        if wipe is not None:
            out = out.masked_fill(wipe.unsqueeze(-1), 0.0)
        return self.o_proj(out)

    def forward_kv_chunks(
        self,
        x_q: torch.Tensor,  # [B, O, Cq], already normalised
        x_kv: torch.Tensor,  # [B, M, Ckv], raw: ``kv_transform`` is applied chunk by chunk
        kv_transform: Callable[[torch.Tensor], torch.Tensor],
        chunk_size: int,
        key_mask: torch.Tensor | None = None,  # [B, M]
        query_mask: torch.Tensor | None = None,  # [B, O]
    ) -> torch.Tensor:  # [B, O, out]
        """``forward(x_q, kv_transform(x_kv), ...)`` for huge M, reading ``chunk_size`` inputs at a time.

        The normalised inputs, keys and values of all M elements never exist at once: each chunk's keys and values
        are projected, scored and folded into a running softmax (running max, normaliser and weighted sum, in
        float32), so memory is O(chunk) rather than O(M) and the working set stays in cache. Same result as
        ``forward`` up to float rounding. For inference: the running state is not built for backward.
        """
        if self.masking == "transformers" and key_mask is not None and not bool(key_mask.any(dim=-1).all()):
            # transformers attends uniformly over all keys of a fully masked example (scores + finfo.min are all
            # equal); a float32 log-sum-exp cannot carry that across chunks, so such batches take one pass
            return self.forward(x_q, kv_transform(x_kv), key_mask, query_mask)
        b, o, _ = x_q.shape
        h = self.num_heads
        q = self.q_proj(x_q).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, O, qk/h]
        attn_mask, wipe = self._masks(key_mask, query_mask, torch.float32)  # [B, 1, 1, M] bool or bias
        fused = q.device.type == "cpu" and _FLASH_CPU is not None
        state = _OnlineSoftmax(fused)
        for start in range(0, x_kv.shape[1], chunk_size):
            kv = kv_transform(x_kv[:, start:start + chunk_size])  # [B, c, Ckv]
            k = self.k_proj(kv).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, c, qk/h]
            v = self.v_proj(kv).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, c, v/h]
            state.add(q, k, v, None if attn_mask is None else attn_mask[..., start:start + chunk_size])
        out = state.result().to(q.dtype).transpose(1, 2).reshape(b, o, -1)  # [B, O, v]
        if wipe is not None:
            out = out.masked_fill(wipe.unsqueeze(-1), 0.0)
        return self.o_proj(out)

    def _masks(
        self, key_mask: torch.Tensor | None, query_mask: torch.Tensor | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Returns (SDPA attn_mask [B, 1, 1, M] or None, rows to zero [B, O] / [B, 1] or None)."""
        if self.masking == "transformers":
            if key_mask is None:
                return None, None
            bias = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
            bias = bias.masked_fill(~key_mask, torch.finfo(dtype).min)
            return bias[:, None, None, :], None

        wipe = None
        attn_mask = None
        if key_mask is not None:
            empty = ~key_mask.any(dim=-1, keepdim=True)  # [B, 1]: every key masked -> weighted sum is 0
            if bool(empty.any()):
                wipe = empty
                key_mask = key_mask | empty  # keep the kernel away from all-masked rows (NaN)
            if not bool(key_mask.all()):
                attn_mask = key_mask[:, None, None, :]
        if query_mask is not None and not bool(query_mask.all()):
            wipe = ~query_mask if wipe is None else (wipe | ~query_mask)
        return attn_mask, wipe
