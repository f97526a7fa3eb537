"""CPU speed paths of attention: the same softmax(Q Kᵀ / sqrt(d)) V, computed the way that is fastest on a CPU.

``perceiverio.core.attention.attend`` sends a call here only for CPU tensors and only where one of these paths
beats ``F.scaled_dot_product_attention`` (:func:`beats_sdpa`); every other device always uses SDPA.

- Inference in bfloat16/float16 (autocast included) runs as two GEMMs per chunk of queries
  (:func:`chunked_attention`): PyTorch's fused CPU kernel reaches 40-190 GFLOP/s there and the GEMMs 1.2-4.5× that
  (docs/benchmarks.md). So does inference with q/k and v head widths that differ: the fused CPU kernel needs one
  width, and PyTorch's fallback would hold every ``[O, M]`` score at once.
- Training with different head widths pads them to one width with zeros, so that the fused kernel, which keeps no
  ``[O, M]`` probabilities for backward, applies.
- Inference over long key/value arrays (:func:`attend_kv_chunks`) folds chunks of keys into a running softmax
  through their log-sum-exp, which PyTorch's fused CPU kernel returns (:func:`attention_with_lse`).

Shapes use the paper's letters: B examples, h heads, O queries, M keys/values, d the q/k and e the v head width.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOW_PRECISION_SCORE_BUDGET = 2**25  # elements of one [B, h, O_chunk, M] score block (64 MiB in bfloat16)
LOW_PRECISION = (torch.bfloat16, torch.float16)


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record an operation on ``tensors`` (grad mode on and one of them requires grad)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def beats_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether :func:`attend` is faster than ``F.scaled_dot_product_attention`` for these CPU tensors: different q/k
    and v head widths, or inference in bfloat16/float16. Depends on shapes, dtypes and grad mode only."""
    return q.shape[-1] != v.shape[-1] or (q.dtype in LOW_PRECISION and not needs_grad(q, k, v))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V on CPU, keeping no ``[O, M]`` tensor for backward.

    Inference: chunked GEMMs. Training: the narrower head width is padded with zeros so that the fused kernel
    applies (zero channels add nothing to Q Kᵀ, padded V channels are cut off again).
    """
    if not needs_grad(q, k, v):
        return chunked_attention(q, k, v, attn_mask)
    d, e = q.shape[-1], v.shape[-1]
    q, k, v = (_pad(t, max(d, e)) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=d**-0.5)[..., :e]


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    budget: int = LOW_PRECISION_SCORE_BUDGET,
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V with explicit matmuls, ``budget`` score elements at a time.

    ``q [B, h, O, d]``, ``k [B, h, M, d]``, ``v [B, h, M, e]``; ``attn_mask``: bool ``[B, 1, 1, M]`` (True = attend)
    or an additive float bias broadcastable to the scores. Rows must not be fully masked.
    """
    b, h, o, d = q.shape
    m = k.shape[-2]
    chunk = max(1, budget // max(1, b * h * m))
    q = q * d**-0.5  # scale O·d entries rather than O·M scores
    kt = k.transpose(-1, -2)  # [B, h, d, M]
    bias = None
    if attn_mask is not None:  # added inside the GEMM (baddbmm): no extra pass over the scores
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, -math.inf)
        bias = attn_mask.to(q.dtype)[(None,) * (4 - attn_mask.dim())].expand(b, h, -1, m).flatten(0, 1)
        q, kt = q.flatten(0, 1), kt.flatten(0, 1)  # [B·h, O, d], [B·h, d, M]; bias [B·h, 1 or O, M]
    outs = []
    for start in range(0, o, chunk):
        if bias is None:
            scores = torch.matmul(q[:, :, start : start + chunk], kt)  # [B, h, c, M]
        else:
            rows = bias if bias.shape[1] == 1 else bias[:, start : start + chunk]
            scores = torch.baddbmm(rows, q[:, start : start + chunk], kt).unflatten(0, (b, h))  # [B, h, c, M]
        outs.append(torch.matmul(scores.softmax(dim=-1), v))  # [B, h, c, e]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


# PyTorch's fused CPU kernel, which also returns the log-sum-exp that chunks need to be combined (private: it is only
# called through attention_with_lse, which falls back to matmuls where it is missing or refuses an input)
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(Q Kᵀ / sqrt(d)) V ``[B, h, O, e]``, log-sum-exp of the scores ``[B, h, O, 1]``), both in float32.

    ``attn_mask``: an additive float32 bias broadcastable to ``[B, h, O, M]`` (-inf = masked), or bool (True =
    attend). Runs on PyTorch's fused CPU kernel (in float32: faster there than bfloat16, docs/benchmarks.md); where
    that kernel is missing or raises on the input, on explicit matmuls with the same result. What a row without any
    unmasked key gets differs between the two: callers must overwrite such rows.
    """
    d, e = q.shape[-1], v.shape[-1]
    q, k, v = q.float(), k.float(), v.float()
    if _FLASH_CPU is not None:
        try:  # the kernel needs one head width: zero channels change nothing
            out, lse = _FLASH_CPU(*(_pad(t, max(d, e)) for t in (q, k, v)), attn_mask=attn_mask, scale=d**-0.5)
            return out[..., :e], lse.unsqueeze(-1)
        except (NotImplementedError, RuntimeError):
            pass
    scores = torch.matmul(q * d**-0.5, k.transpose(-1, -2))  # [B, h, O, M]
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # [B, h, O, 1]
    p = torch.exp(scores - lse.masked_fill(torch.isinf(lse), 0.0))
    return torch.matmul(p, v), lse


class OnlineSoftmax:
    """softmax(Q Kᵀ / sqrt(d)) V over key/value chunks that arrive one at a time (float32 running state).

    Each chunk gives its own attention output and log-sum-exp of scores (:func:`attention_with_lse`); outputs are
    combined with weights exp(lse_chunk − lse_total), so the result equals one softmax over all keys. A chunk in
    which a row has no unmasked key gets weight 0, and a row without any unmasked key at all ends as 0.
    """

    def __init__(self) -> None:
        self.lse: torch.Tensor | None = None  # [B, h, O, 1]
        self.acc: torch.Tensor | None = None  # [B, h, O, e], normalised by everything seen so far

    def add(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """Folds in keys ``k [B, h, c, d]`` and values ``v [B, h, c, e]``; ``keep``: bool ``[B, 1, 1, c]``."""
        bias = None
        if keep is not None:
            bias = torch.zeros(keep.shape, dtype=torch.float32, device=keep.device).masked_fill(~keep, float("-inf"))
        out, lse = attention_with_lse(q, k, v, bias)  # [B, h, O, e], [B, h, O, 1]
        if keep is not None:
            has_key = keep.any(dim=-1, keepdim=True)  # [B, 1, 1, 1]
            lse = lse.masked_fill(~has_key, float("-inf"))
            out = out.masked_fill(~has_key, 0.0)
        if self.lse is None:
            self.lse, self.acc = lse, out
            return
        total = torch.logaddexp(self.lse, lse)
        safe = total.masked_fill(torch.isinf(total), 0.0)  # -inf - -inf would be NaN: keep such rows at 0
        self.acc = self.acc * torch.exp(self.lse - safe) + out * torch.exp(lse - safe)
        self.lse = total

    def result(self) -> torch.Tensor:  # [B, h, O, e] float32
        return self.acc


def attend_kv_chunks(
    q: torch.Tensor,
    x_kv: torch.Tensor,
    keys_values: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    chunk_size: int,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d)) V over ``M = x_kv.shape[1]`` inputs, ``chunk_size`` at a time, in float32.

    ``q [B, h, O, d]``; ``keys_values`` maps a slice ``x_kv[:, i:j]`` to its keys ``[B, h, c, d]`` and values
    ``[B, h, c, e]``, so the keys and values of all M inputs never exist at once; ``keep``: bool ``[B, 1, 1, M]``
    (True = attend). For inference: the running state is not built for backward.
    """
    state = OnlineSoftmax()
    for start in range(0, x_kv.shape[1], chunk_size):
        k, v = keys_values(x_kv[:, start : start + chunk_size])
        state.add(q, k, v, None if keep is None else keep[..., start : start + chunk_size])
    return state.result()  # [B, h, O, e]


def _pad(t: torch.Tensor, width: int) -> torch.Tensor:  # zero channels up to ``width``
    return t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1]))
