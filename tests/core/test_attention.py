"""MultiHeadAttention against naive references written from the formulas.

official:      logits = (Q Kᵀ) / sqrt(d_qk per head); logits = where(mask, logits, -1e30); softmax over keys;
               weighted sum of V; rows whose mask row is all zero are set to 0; then the output projection.
               mask[b, o, m] = query_mask[b, o] & key_mask[b, m] (DeepMind's make_cross_attention_mask).
transformers:  logits + (1 - key_mask) · finfo.min, softmax, weighted sum, projection; no wiping, no query mask.
"""

from __future__ import annotations

import math

import pytest
import torch

from perceiverio.core import MultiHeadAttention

B, O, M = 3, 5, 7  # noqa: E741 (the paper's letters: batch, output queries, input elements)
CQ, CKV = 12, 10
HEADS, QK, V, OUT = 4, 16, 24, 9  # qk != v channels, several heads


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:  # [B, T, C] -> [B, h, T, C/h] (contiguous slices)
    b, t, c = x.shape
    return x.reshape(b, t, h, c // h).permute(0, 2, 1, 3)


def _naive_official(attn: MultiHeadAttention, x_q, x_kv, key_mask=None, query_mask=None) -> torch.Tensor:
    h = attn.num_heads
    q = _heads(x_q @ attn.q_proj.weight.T + attn.q_proj.bias, h)
    k = _heads(x_kv @ attn.k_proj.weight.T + attn.k_proj.bias, h)
    v = _heads(x_kv @ attn.v_proj.weight.T + attn.v_proj.bias, h)
    logits = torch.einsum("bhqd,bhkd->bhqk", q, k) * (1.0 / math.sqrt(q.shape[-1]))
    b, o, m = x_q.shape[0], x_q.shape[1], x_kv.shape[1]
    qm = torch.ones(b, o, dtype=torch.bool) if query_mask is None else query_mask
    km = torch.ones(b, m, dtype=torch.bool) if key_mask is None else key_mask
    mask = qm[:, :, None] & km[:, None, :]  # [B, O, M]
    logits = torch.where(mask[:, None], logits, torch.full_like(logits, -1e30))
    weights = torch.softmax(logits, dim=-1)
    out = torch.einsum("bhqk,bhkd->bhqd", weights, v)  # [B, h, O, dv]
    out = out.permute(0, 2, 1, 3).reshape(b, o, -1)  # [B, O, v]
    wipe = ~mask.any(dim=-1)  # [B, O]: query rows with no visible key
    out = torch.where(wipe[..., None], torch.zeros_like(out), out)
    return out @ attn.o_proj.weight.T + attn.o_proj.bias


def _naive_transformers(attn: MultiHeadAttention, x_q, x_kv, key_mask=None) -> torch.Tensor:
    h = attn.num_heads
    q = _heads(x_q @ attn.q_proj.weight.T + attn.q_proj.bias, h)
    k = _heads(x_kv @ attn.k_proj.weight.T + attn.k_proj.bias, h)
    v = _heads(x_kv @ attn.v_proj.weight.T + attn.v_proj.bias, h)
    logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        logits = logits + (1.0 - key_mask.to(logits.dtype))[:, None, None, :] * torch.finfo(logits.dtype).min
    weights = torch.softmax(logits, dim=-1)
    out = torch.matmul(weights, v).permute(0, 2, 1, 3).reshape(x_q.shape[0], x_q.shape[1], -1)
    return out @ attn.o_proj.weight.T + attn.o_proj.bias


def _module(masking: str = "official") -> MultiHeadAttention:
    attn = MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT, masking=masking).double()
    with torch.no_grad():  # non-zero biases so "wiped" rows are distinguishable from a zero output
        for p in attn.parameters():
            p.normal_(0.0, 0.5)
    return attn.eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(B, O, CQ, generator=g, dtype=torch.float64),
        torch.randn(B, M, CKV, generator=g, dtype=torch.float64),
    )


KEY_MASK = torch.tensor(
    [
        [1, 1, 1, 1, 1, 1, 1],  # nothing masked
        [1, 1, 1, 0, 0, 0, 0],  # trailing padding
        [0, 1, 0, 1, 1, 0, 1],  # scattered
    ],
    dtype=torch.bool,
)
QUERY_MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 1, 1, 1]], dtype=torch.bool)
FULLY_MASKED = torch.tensor(
    [
        [1, 1, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0],  # a fully padded example
        [1, 0, 0, 0, 0, 0, 0],
    ],
    dtype=torch.bool,
)


def test_no_mask_matches_formula():
    attn = _module()
    xq, xkv = _inputs()
    torch.testing.assert_close(attn(xq, xkv), _naive_official(attn, xq, xkv), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("key_mask", [KEY_MASK, FULLY_MASKED], ids=["partial", "fully_masked_example"])
def test_key_mask_matches_official_formula(key_mask):
    attn = _module()
    xq, xkv = _inputs()
    torch.testing.assert_close(
        attn(xq, xkv, key_mask=key_mask), _naive_official(attn, xq, xkv, key_mask), rtol=1e-10, atol=1e-10
    )


def test_masked_keys_have_no_influence():
    attn = _module()
    xq, xkv = _inputs()
    ref = attn(xq, xkv, key_mask=KEY_MASK)
    garbage = xkv.clone()
    garbage[~KEY_MASK] = 1e3 * torch.randn_like(garbage[~KEY_MASK])
    torch.testing.assert_close(attn(xq, garbage, key_mask=KEY_MASK), ref, rtol=1e-10, atol=1e-10)
    # dropping the masked keys of example 1 outright gives the same rows
    torch.testing.assert_close(attn(xq[1:2], xkv[1:2, :3]), ref[1:2], rtol=1e-10, atol=1e-10)


def test_query_mask_matches_official_formula():
    attn = _module()
    xq, xkv = _inputs()
    out = attn(xq, xkv, query_mask=QUERY_MASK)
    torch.testing.assert_close(out, _naive_official(attn, xq, xkv, query_mask=QUERY_MASK), rtol=1e-10, atol=1e-10)
    # a masked query's output is the output-projection bias ("wiped then biased"), not zero
    bias = attn.o_proj.bias.detach().expand(int((~QUERY_MASK).sum()), -1)
    torch.testing.assert_close(out[~QUERY_MASK], bias, rtol=0, atol=0)
    # unmasked query rows are unaffected by the query mask
    torch.testing.assert_close(out[QUERY_MASK], attn(xq, xkv)[QUERY_MASK], rtol=1e-10, atol=1e-10)


def test_query_and_key_masks_together():
    attn = _module()
    xq, xkv = _inputs()
    out = attn(xq, xkv, key_mask=FULLY_MASKED, query_mask=QUERY_MASK)
    ref = _naive_official(attn, xq, xkv, FULLY_MASKED, QUERY_MASK)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_fully_masked_example_gives_projection_bias_in_official_mode():
    attn = _module()
    xq, xkv = _inputs()
    out = attn(xq, xkv, key_mask=FULLY_MASKED)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], attn.o_proj.bias.detach().expand(O, -1), rtol=0, atol=0)
    # the other examples are untouched by example 1 being empty
    torch.testing.assert_close(
        out[[0, 2]], attn(xq[[0, 2]], xkv[[0, 2]], key_mask=FULLY_MASKED[[0, 2]]), rtol=1e-10, atol=1e-10
    )


def test_heads_are_contiguous_channel_slices():
    """With one head the logits would mix all channels; check heads really are independent slices."""
    attn = _module()
    xq, xkv = _inputs()
    one_head = MultiHeadAttention(CQ, CKV, 1, QK, V, OUT).double()
    one_head.load_state_dict(attn.state_dict())
    assert not torch.allclose(one_head(xq, xkv), attn(xq, xkv))
    torch.testing.assert_close(one_head(xq, xkv), _naive_official(one_head, xq, xkv), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("key_mask", [None, KEY_MASK, FULLY_MASKED], ids=["none", "partial", "fully_masked"])
def test_transformers_mode_matches_hf_formula(key_mask):
    attn = _module("transformers")
    xq, xkv = _inputs()
    out = attn(xq, xkv, key_mask=key_mask)
    torch.testing.assert_close(out, _naive_transformers(attn, xq, xkv, key_mask), rtol=1e-10, atol=1e-10)


def test_transformers_mode_fully_masked_attends_uniformly_and_ignores_query_mask():
    attn = _module("transformers")
    xq, xkv = _inputs()
    out = attn(xq, xkv, key_mask=FULLY_MASKED, query_mask=QUERY_MASK)
    assert torch.isfinite(out).all()
    # no wiping: example 1 averages V over all (padded) keys
    v_mean = (xkv[1] @ attn.v_proj.weight.T + attn.v_proj.bias).mean(dim=0)
    expected = (v_mean @ attn.o_proj.weight.T + attn.o_proj.bias).expand(O, -1)
    torch.testing.assert_close(out[1], expected, rtol=1e-10, atol=1e-10)
    # query masks are ignored in this mode
    torch.testing.assert_close(out, attn(xq, xkv, key_mask=FULLY_MASKED), rtol=0, atol=0)
    # and the two modes really differ on the fully masked example
    official = _module("official")
    official.load_state_dict(attn.state_dict())
    assert not torch.allclose(official(xq, xkv, key_mask=FULLY_MASKED)[1], out[1])


@pytest.mark.parametrize("masking", ["official", "transformers"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fully_padded_example_has_no_nans(masking, dtype):
    attn = MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT, masking=masking).to(dtype)
    xq, xkv = (t.to(dtype).requires_grad_() for t in _inputs())
    mask = torch.zeros(B, M, dtype=torch.bool)  # every example fully padded
    out = attn(xq, xkv, key_mask=mask, query_mask=torch.zeros(B, O, dtype=torch.bool))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(xq.grad).all() and torch.isfinite(xkv.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)


def test_float32_matches_reference():
    attn = MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT)
    xq, xkv = (t.float() for t in _inputs())
    ref = _naive_official(attn.double(), xq.double(), xkv.double(), KEY_MASK, QUERY_MASK)
    attn.float()
    torch.testing.assert_close(attn(xq, xkv, KEY_MASK, QUERY_MASK), ref.float(), rtol=1e-5, atol=1e-5)


def test_invalid_head_split_and_masking_rejected():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(CQ, CKV, 5, QK, 20, OUT)  # qk 16 not divisible by 5
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(CQ, CKV, 4, QK, 10, OUT)  # v 10 not divisible by 4
    with pytest.raises(ValueError, match="masking"):
        MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT, masking="hf")


# ------------------------------------------------------------------- low precision on CPU: chunked GEMM attention
@pytest.mark.parametrize("budget", [10**9, 40])  # one chunk; several chunks of queries
def test_chunked_attention_equals_sdpa(budget):
    from perceiverio.core.cpu_attention import chunked_attention

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 11, 8, generator=g), torch.randn(2, 3, 13, 8, generator=g)
    v = torch.randn(2, 3, 13, 5, generator=g)
    keep = torch.rand(2, 13, generator=g) > 0.3
    keep[:, 0] = True
    bool_mask = keep[:, None, None, :]
    bias = torch.zeros(2, 1, 1, 13).masked_fill(~bool_mask, torch.finfo(torch.float32).min)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask)
    torch.testing.assert_close(chunked_attention(q, k, v, bool_mask, budget=budget), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked_attention(q, k, v, bias, budget=budget), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        chunked_attention(q, k, v, budget=budget),
        torch.nn.functional.scaled_dot_product_attention(q, k, v),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_bfloat16_autocast_matches_float32(masking):
    torch.manual_seed(0)
    attn = MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT, masking=masking)
    x_q, x_kv = torch.randn(B, 64, CQ), torch.randn(B, 300, CKV)
    key_mask = torch.rand(B, 300) > 0.2
    key_mask[0] = False  # a fully masked example: wiped (official) or uniform (transformers)
    query_mask = torch.rand(B, 64) > 0.1
    with torch.no_grad():
        ref = attn(x_q, x_kv, key_mask, query_mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = attn(x_q, x_kv, key_mask, query_mask)
            # masked keys have no influence in the low-precision path either
            changed = x_kv.clone()
            changed[~key_mask] = 1e3
            low_changed = attn(x_q, changed, key_mask, query_mask)
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).abs().max() / ref.abs().max()
    assert rel < 2e-2, f"bf16 relative error {rel:.3g}"
    if masking == "official":
        assert (low[0] == 0).all() or torch.allclose(low[0].float(), attn.o_proj.bias.expand_as(low[0]), atol=1e-2)
        torch.testing.assert_close(low_changed[1:], low[1:])


def test_bfloat16_training_keeps_the_fused_kernel(monkeypatch):
    from perceiverio.core import cpu_attention

    calls = []
    monkeypatch.setattr(cpu_attention, "chunked_attention", lambda *a, **k: calls.append(1) or torch.zeros(0))
    attn = MultiHeadAttention(CQ, CKV, HEADS, QK, V, OUT)
    x_q, x_kv = torch.randn(B, 4, CQ), torch.randn(B, 6, CKV)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x_q, x_kv).float().sum().backward()  # grad needed: fused kernel, no [O, M] tensor kept
        assert calls == []


@pytest.mark.parametrize("masked", [False, True])
def test_backward_keeps_no_score_matrix(masked):
    """Training saves q, k, v, the output and per-row statistics, never the [O, M] attention probabilities."""
    torch.manual_seed(0)
    o, m = 64, 2048
    attn = MultiHeadAttention(CQ, CKV, 2, QK, V, OUT)
    x_q, x_kv = torch.randn(1, o, CQ, requires_grad=True), torch.randn(1, m, CKV)
    key_mask = (torch.rand(1, m) > 0.1) if masked else None
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = attn(x_q, x_kv, key_mask)
    out.sum().backward()
    assert max(saved) < o * m  # a score matrix alone would be 2 heads x 64 x 2048
    assert x_q.grad is not None and torch.isfinite(x_q.grad).all()


def test_checkpointing_keeps_no_per_element_activations():
    """With gradient checkpointing on, autograd keeps no [M, ·] or [O, ·] activation of the cross-attentions (their
    normalised inputs, keys, values, hidden states) between forward and backward, chunked decoding included, and the
    gradients do not change."""
    from perceiverio import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig

    m, c, o = 4096, 32, 4096
    torch.manual_seed(0)
    model = PerceiverIO.from_config(
        PerceiverIOConfig(
            num_input_channels=c,
            num_output_queries=o,
            encoder=EncoderConfig(
                num_latents=16,
                num_latent_channels=32,
                num_cross_attention_heads=1,
                num_self_attention_heads=2,
                num_self_attends_per_block=2,
            ),
            decoder=DecoderConfig(num_query_channels=c, num_heads=1),
        )
    ).train()
    x = torch.randn(1, m, c)
    given = {t.untyped_storage().data_ptr() for t in [x, *model.parameters()]}  # not new memory
    totals, grads = {}, {}
    for ckpt in (False, True):
        model.encoder.gradient_checkpointing = model.decoder.gradient_checkpointing = ckpt
        model.zero_grad()
        saved = {}

        def pack(t, saved=saved):
            storage = t.untyped_storage()
            if storage.data_ptr() not in given:
                saved[storage.data_ptr()] = storage.nbytes() // t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x, chunk_size=1024)  # [1, O, C]
        (out * torch.linspace(-1, 1, c)).sum().backward()
        totals[ckpt] = sum(saved.values())
        grads[ckpt] = [p.grad.clone() for p in model.parameters()]
    assert totals[False] > 8 * m * c  # without: several [M, C] and [O, C] arrays per cross-attention
    assert totals[True] < m * c // 8  # with: latent-sized bookkeeping only
    for a, b in zip(grads[False], grads[True]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dq, dv", [(4, 6), (6, 4), (5, 5)])
def test_training_path_gradients_equal_the_formula(dq, dv):
    from perceiverio.core.attention import attend

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 7, dq, generator=g), torch.randn(2, 3, 9, dq, generator=g)
    v = torch.randn(2, 3, 9, dv, generator=g)
    mask = torch.rand(2, 1, 1, 9, generator=g) > 0.3
    mask[..., 0] = True
    grads = []
    for fn in (
        lambda q, k, v: attend(q, k, v, mask),
        lambda q, k, v: ((q @ k.transpose(-1, -2)) / math.sqrt(dq)).masked_fill(~mask, float("-inf")).softmax(-1) @ v,
    ):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*leaves)
        assert out.shape == (2, 3, 7, dv)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append([out.detach()] + [t.grad for t in leaves])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- huge M: keys and values read in chunks
@pytest.mark.parametrize("masking", ["official", "transformers"])
@pytest.mark.parametrize("chunk", [7, 16, 49])
def test_kv_chunks_equal_one_pass(masking, chunk):
    from perceiverio.core.blocks import CrossAttentionBlock

    torch.manual_seed(0)
    block = CrossAttentionBlock(CQ, CKV, num_heads=2, num_qk_channels=8, num_v_channels=12, masking=masking)
    x_q, x_kv = torch.randn(3, 6, CQ), torch.randn(3, 50, CKV) * 3
    key_mask = torch.rand(3, 50) > 0.3
    key_mask[1] = False  # a fully masked example
    key_mask[2, :20] = False  # whole chunks without a key
    query_mask = torch.rand(3, 6) > 0.2
    with torch.no_grad():
        block.kv_chunk_size = None
        ref = block(x_q, x_kv, key_mask, query_mask)
        block.kv_chunk_size = chunk
        out = block(x_q, x_kv, key_mask, query_mask)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            block(x_q, x_kv), (setattr(block, "kv_chunk_size", None), block(x_q, x_kv))[1], rtol=1e-5, atol=1e-5
        )


def test_kv_chunks_only_without_gradients(monkeypatch):
    from perceiverio.core.blocks import CrossAttentionBlock

    block = CrossAttentionBlock(CQ, CKV, num_heads=1)
    block.kv_chunk_size = 4
    calls = []
    original = block.attention.forward_kv_chunks
    monkeypatch.setattr(block.attention, "forward_kv_chunks", lambda *a, **k: calls.append(1) or original(*a, **k))
    x_q, x_kv = torch.randn(1, 3, CQ), torch.randn(1, 10, CKV)
    block(x_q, x_kv).sum().backward()  # training: one pass, gradients as usual
    assert calls == [] and block.attention.k_proj.weight.grad is not None
    with torch.no_grad():
        block(x_q, x_kv)
    assert calls == [1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = block(x_q, x_kv)
        block.kv_chunk_size = None
        ref = block(x_q, x_kv)
    assert (low.float() - ref.float()).abs().max() / ref.float().abs().max() < 2e-2
