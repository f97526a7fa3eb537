"""Attention never reads tensor values in Python: no host sync per call on a GPU, no graph break under
``torch.compile``, and ``torch.export`` traces the blocks with masks."""

from __future__ import annotations

import pytest
import torch

from perceiverio.core import CrossAttentionBlock, MultiHeadAttention, SelfAttentionBlock

CQ, CKV = 12, 10


def _cross(masking: str, kv_chunk_size: int | None) -> CrossAttentionBlock:
    torch.manual_seed(0)
    block = CrossAttentionBlock(CQ, CKV, num_heads=2, num_qk_channels=8, num_v_channels=12, masking=masking).eval()
    block.kv_chunk_size = kv_chunk_size
    return block


def _inputs():
    g = torch.Generator().manual_seed(1)
    x_q, x_kv = torch.randn(3, 6, CQ, generator=g), torch.randn(3, 50, CKV, generator=g)
    key_mask = torch.rand(3, 50, generator=g) > 0.3
    key_mask[1] = False  # a fully masked example
    query_mask = torch.rand(3, 6, generator=g) > 0.2
    return x_q, x_kv, key_mask, query_mask


def _graph_breaks(fn, *args) -> int:
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*args)
    assert explained.graph_count == 1, explained.break_reasons
    return explained.graph_break_count


@pytest.mark.parametrize("masking", ["official", "transformers"])
@pytest.mark.parametrize("mode", ["train", "infer", "infer_kv_chunks"])
def test_cross_attention_block_compiles_without_graph_breaks(masking, mode):
    block = _cross(masking, 16 if mode == "infer_kv_chunks" else None)
    with torch.set_grad_enabled(mode == "train"):
        assert _graph_breaks(block, *_inputs()) == 0


@pytest.mark.parametrize("grad", [True, False])
def test_self_attention_block_compiles_without_graph_breaks(grad):
    block = SelfAttentionBlock(16, num_heads=4).eval()
    with torch.set_grad_enabled(grad):
        assert _graph_breaks(block, torch.randn(2, 5, 16)) == 0


@pytest.mark.parametrize("masking", ["official", "transformers"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_self_attention_compiles_without_graph_breaks(masking, dtype):
    """Self-attention (one head width, q = kv) with key and query masks; bf16 inference takes the CPU GEMM path."""
    attn = MultiHeadAttention(16, 16, 4, 16, 16, 16, masking=masking).to(dtype).eval()
    x = torch.randn(2, 7, 16, dtype=dtype)
    mask = torch.tensor([[1, 1, 1, 0, 0, 1, 1], [0] * 7], dtype=torch.bool)
    with torch.no_grad():
        assert _graph_breaks(attn, x, x, mask, mask) == 0


def test_compiled_block_matches_eager():
    block = _cross("official", None)
    args = _inputs()
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(*args), block(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("masking", ["official", "transformers"])
@pytest.mark.parametrize("kv_chunk_size", [None, 16])
def test_export_with_a_key_mask_matches_eager(masking, kv_chunk_size):
    block = _cross(masking, kv_chunk_size)
    args = _inputs()
    with torch.no_grad():
        exported = torch.export.export(block, args)
        # other mask values than those traced with: nothing was specialised on them
        x_q, x_kv, key_mask, query_mask = args
        for km, qm in (
            (key_mask, query_mask),
            (torch.ones_like(key_mask), torch.ones_like(query_mask)),
            (~key_mask, query_mask),
        ):
            torch.testing.assert_close(
                exported.module()(x_q, x_kv, km, qm), block(x_q, x_kv, km, qm), rtol=1e-5, atol=1e-5
            )
