"""The CPU speed paths (core/cpu_attention.py) and the dispatch to them: same numbers as SDPA and the formula.

The private fused CPU op is only reached through ``attention_with_lse``; its explicit-matmul fallback (op missing, or
op refusing the input) must give the same output and log-sum-exp.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from perceiverio.core import CrossAttentionBlock, MultiHeadAttention, cpu_attention

CQ, CKV = 12, 10


def _qkv(d: int = 8, e: int = 5, o: int = 11, m: int = 13):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 3, o, d, generator=g),
        torch.randn(2, 3, m, d, generator=g),
        torch.randn(2, 3, m, e, generator=g),
    )


def _keep(m: int = 13) -> torch.Tensor:  # bool [2, 1, 1, M]; example 1 has no key in its first 6 positions
    g = torch.Generator().manual_seed(1)
    keep = torch.rand(2, 1, 1, m, generator=g) > 0.3
    keep[..., -1] = True
    keep[1, ..., :6] = False
    return keep


def _bias(keep: torch.Tensor) -> torch.Tensor:
    return torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))


def _formula(q, k, v, keep=None):  # (out, lse) from the definitions
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores.softmax(-1) @ v, torch.logsumexp(scores, dim=-1, keepdim=True)


def _no_op(monkeypatch):
    monkeypatch.setattr(cpu_attention, "_FLASH_CPU", None)


def _refusing_op(monkeypatch):
    def refuse(*args, **kwargs):
        raise NotImplementedError("not on this input")

    monkeypatch.setattr(cpu_attention, "_FLASH_CPU", refuse)


@pytest.mark.parametrize("d, e", [(8, 5), (5, 8), (6, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_with_lse_fused_and_fallback_agree(monkeypatch, d, e, masked):
    q, k, v = _qkv(d, e)
    keep = _keep() if masked else None
    bias = None if keep is None else _bias(keep)
    ref_out, ref_lse = _formula(q, k, v, keep)
    ran = []
    op = cpu_attention._FLASH_CPU
    monkeypatch.setattr(cpu_attention, "_FLASH_CPU", lambda *a, **kw: (op(*a, **kw), ran.append(1))[0])
    fused = cpu_attention.attention_with_lse(q, k, v, bias)
    assert ran == [1]  # the fused op really ran on this input
    _no_op(monkeypatch)
    missing = cpu_attention.attention_with_lse(q, k, v, bias)
    _refusing_op(monkeypatch)
    refused = cpu_attention.attention_with_lse(q, k, v, bias)
    for out, lse in (fused, missing, refused):
        assert out.dtype == lse.dtype == torch.float32 and out.shape == (2, 3, 11, e) and lse.shape == (2, 3, 11, 1)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(missing, fused, rtol=1e-5, atol=1e-5)


def test_attention_with_lse_falls_back_on_an_input_the_op_refuses():
    """PyTorch's fused CPU op raises on a bool mask: the fallback reads it as True = attend."""
    q, k, v = _qkv()
    keep = _keep()
    keep[1, ..., :6] = True  # every row has a key
    out, lse = cpu_attention.attention_with_lse(q, k, v, keep)
    ref_out, ref_lse = _formula(q, k, v, keep)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["fused", "missing", "refusing"])
@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_kv_chunks_with_and_without_the_fused_op_equal_one_pass(monkeypatch, op, masking):
    {"fused": lambda m: None, "missing": _no_op, "refusing": _refusing_op}[op](monkeypatch)
    torch.manual_seed(0)
    block = CrossAttentionBlock(CQ, CKV, num_heads=2, num_qk_channels=8, num_v_channels=12, masking=masking)
    x_q, x_kv = torch.randn(3, 6, CQ), torch.randn(3, 50, CKV) * 3
    key_mask = torch.rand(3, 50) > 0.3
    key_mask[1] = False  # fully masked: zeroed (official) or attends uniformly (transformers)
    key_mask[2, :20] = False  # whole chunks without a key
    query_mask = torch.rand(3, 6) > 0.2
    with torch.no_grad():
        block.kv_chunk_size = None
        ref = block(x_q, x_kv, key_mask, query_mask)
        block.kv_chunk_size = 7
        torch.testing.assert_close(block(x_q, x_kv, key_mask, query_mask), ref, rtol=1e-5, atol=1e-5)


def test_online_softmax_rows_without_any_key_end_as_zero():
    q, k, v = _qkv()
    state = cpu_attention.OnlineSoftmax()
    keep = torch.zeros(2, 1, 1, 13, dtype=torch.bool)
    keep[0] = True  # example 1 has no key in either chunk
    state.add(q, k[..., :6, :], v[..., :6, :], keep[..., :6])
    state.add(q, k[..., 6:, :], v[..., 6:, :], keep[..., 6:])
    out = state.result()
    assert (out[1] == 0).all()
    torch.testing.assert_close(out[0], _formula(q, k, v)[0][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget", [10**9, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_attention_masks_inside_the_gemm(budget, dtype):
    q, k, v = (t.to(dtype) for t in _qkv())
    keep = _keep()
    keep[1, ..., :6] = True
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for mask in (keep, _bias(keep), _bias(keep)[0, 0]):  # bool, [B, 1, 1, M] bias, a 2-D bias
        if mask.dim() == 2:
            want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep[0, 0])
        else:
            want = ref
        out = cpu_attention.chunked_attention(q, k, v, mask, budget=budget)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), want, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------------------ dispatch
def _spy(monkeypatch, module, name, calls):
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: calls.append(name) or original(*a, **kw))


@pytest.mark.parametrize(
    "dtype, qk, grad, path",
    [
        (torch.float32, 16, False, "sdpa"),  # equal widths, float32: the fused CPU kernel
        (torch.float32, 8, False, "cpu"),  # unequal widths, inference: chunked GEMMs
        (torch.float32, 8, True, "cpu"),  # unequal widths, training: padded widths, then SDPA
        (torch.bfloat16, 16, False, "cpu"),  # low precision inference: chunked GEMMs
        (torch.bfloat16, 16, True, "sdpa"),  # low precision training: the fused kernel
    ],
)
def test_cpu_dispatch(monkeypatch, dtype, qk, grad, path):
    calls = []
    _spy(monkeypatch, cpu_attention, "attend", calls)
    attn = MultiHeadAttention(CQ, CKV, 2, qk, 16, 9).to(dtype)
    with torch.set_grad_enabled(grad):
        attn(torch.randn(2, 4, CQ, dtype=dtype), torch.randn(2, 6, CKV, dtype=dtype), torch.rand(2, 6) > 0.3)
    assert calls == (["attend"] if path == "cpu" else [])


def test_other_devices_always_take_sdpa(monkeypatch):
    """Off CPU (here the meta device, which runs no arithmetic) every path is one SDPA call: low precision,
    unequal head widths and key/value arrays longer than the chunk size included."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a CPU path was taken off CPU")

    for name in ("attend", "chunked_attention", "attend_kv_chunks", "attention_with_lse"):
        monkeypatch.setattr(cpu_attention, name, forbidden)
    calls = []
    _spy(monkeypatch, F, "scaled_dot_product_attention", calls)
    for masking in ("official", "transformers"):
        block = CrossAttentionBlock(CQ, CKV, num_heads=2, num_qk_channels=8, num_v_channels=12, masking=masking)
        block = block.to("meta", torch.bfloat16).eval()
        block.kv_chunk_size = 16
        x_q, x_kv = torch.randn(2, 5, CQ, device="meta", dtype=torch.bfloat16), torch.randn(2, 100, CKV, device="meta")
        key_mask = torch.ones(2, 100, dtype=torch.bool, device="meta")
        with torch.no_grad():
            assert block(x_q, x_kv.bfloat16(), key_mask).shape == (2, 5, CQ)
            attn = block.attention
            out = attn.forward_kv_chunks(x_q, x_kv.bfloat16(), block.kv_norm, 16, key_mask)
            assert out.shape == (2, 5, CQ)
    assert calls == ["scaled_dot_product_attention"] * 4
