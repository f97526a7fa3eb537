"""Attention maps (``return_attention=True``): probabilities of a reference written here from the formula, rows that
sum to 1, masked keys at exactly 0, and outputs that do not change when the maps are asked for.

Reference: p = softmax(Q Kᵀ / sqrt(d)) per head in float64 with Q = q_proj(x_q), K = k_proj(x_kv) (heads are
contiguous channel slices). official masking: masked keys -inf, rows of examples without any real key and rows of
masked queries all 0 (their output is zeroed). transformers masking: finfo(float32).min added to masked keys (a fully
masked example attends uniformly), query masks ignored.
"""

from __future__ import annotations

import math

import pytest
import torch

from perceiverio import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultimodalAutoencoder,
    MultimodalAutoencoderConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    OpticalFlow,
    OpticalFlowConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    SetModel,
    SetModelConfig,
)
from perceiverio.core import AttentionMaps, MultiHeadAttention, PerceiverIO

B, O, M = 3, 5, 7  # noqa: E741 (the paper's letters)


def _reference(attn: MultiHeadAttention, x_q, x_kv, key_mask=None, query_mask=None) -> torch.Tensor:
    h = attn.num_heads
    x_q, x_kv = x_q.double(), x_kv.double()
    q = x_q @ attn.q_proj.weight.double().T + attn.q_proj.bias.double()
    k = x_kv @ attn.k_proj.weight.double().T + attn.k_proj.bias.double()
    b, o, m = q.shape[0], q.shape[1], k.shape[1]
    q = q.reshape(b, o, h, -1).permute(0, 2, 1, 3)  # [B, h, O, d]
    k = k.reshape(b, m, h, -1).permute(0, 2, 1, 3)  # [B, h, M, d]
    scores = torch.einsum("bhod,bhmd->bhom", q, k) / math.sqrt(q.shape[-1])
    km = torch.ones(b, m, dtype=torch.bool) if key_mask is None else key_mask
    if attn.masking == "transformers":
        scores = scores + (~km)[:, None, None, :].double() * torch.finfo(torch.float32).min
        return torch.softmax(scores, dim=-1)
    qm = torch.ones(b, o, dtype=torch.bool) if query_mask is None else query_mask
    visible = (qm[:, :, None] & km[:, None, :])[:, None]  # [B, 1, O, M]
    p = torch.softmax(scores.masked_fill(~visible, -math.inf), dim=-1)
    return torch.nan_to_num(p, nan=0.0)  # a row without any visible key: 0 everywhere


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_q, x_kv = torch.randn(B, O, 12, generator=g), torch.randn(B, M, 10, generator=g)
    key_mask = torch.ones(B, M, dtype=torch.bool)
    key_mask[0, 4:] = False  # padded example
    key_mask[1] = False  # fully masked example
    query_mask = torch.ones(B, O, dtype=torch.bool)
    query_mask[2, 3:] = False
    return x_q, x_kv, key_mask, query_mask


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_module_maps_equal_reference_and_leave_output_unchanged(masking):
    torch.manual_seed(0)
    attn = MultiHeadAttention(12, 10, num_heads=4, num_qk_channels=16, num_v_channels=24, num_output_channels=9)
    attn.masking = masking
    x_q, x_kv, key_mask, query_mask = _inputs()
    plain = attn(x_q, x_kv, key_mask, query_mask)
    out, p = attn(x_q, x_kv, key_mask, query_mask, return_attention=True)
    assert torch.equal(out, plain)  # bitwise: the same fused computation
    assert p.shape == (B, 4, O, M) and p.dtype == torch.float32
    torch.testing.assert_close(p.double(), _reference(attn, x_q, x_kv, key_mask, query_mask), atol=1e-6, rtol=1e-5)
    assert torch.equal(p[0, :, :, 4:], torch.zeros_like(p[0, :, :, 4:]))  # masked keys exactly 0
    sums = p.sum(-1)  # [B, h, O]
    if masking == "official":
        assert torch.equal(p[1], torch.zeros_like(p[1]))  # fully masked example: output zeroed, map too
        assert torch.equal(p[2, :, 3:], torch.zeros_like(p[2, :, 3:]))  # masked queries
        torch.testing.assert_close(sums[0], torch.ones_like(sums[0]))
        torch.testing.assert_close(sums[2, :, :3], torch.ones_like(sums[2, :, :3]))
    else:  # finfo.min everywhere: uniform over every key; query masks ignored
        torch.testing.assert_close(p[1], torch.full_like(p[1], 1 / M))
        torch.testing.assert_close(sums, torch.ones_like(sums))
    torch.testing.assert_close(attn.probabilities(x_q, x_kv, key_mask, query_mask), p)


def test_chunked_key_value_path_gives_exact_maps_and_unchanged_output():
    from perceiverio.core import CrossAttentionBlock

    torch.manual_seed(0)
    block = CrossAttentionBlock(12, 10, num_heads=2, num_qk_channels=8).eval()
    block.kv_chunk_size = 3  # M = 7 > 3: the CPU inference path reads the inputs in chunks
    x_q, x_kv, key_mask, query_mask = _inputs()
    with torch.no_grad():
        chunked = block(x_q, x_kv, key_mask, query_mask)
        out, p = block(x_q, x_kv, key_mask, query_mask, return_attention=True)
        block.kv_chunk_size = None
        _, whole = block(x_q, x_kv, key_mask, query_mask, return_attention=True)
    assert torch.equal(out, chunked)
    torch.testing.assert_close(p, whole)
    ref = _reference(block.attention, block.q_norm(x_q), block.kv_norm(x_kv), key_mask, query_mask)
    torch.testing.assert_close(p.double(), ref.detach(), atol=1e-6, rtol=1e-5)


def _text(b: int = 2, length: int = 16):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 10:] = 0
    return torch.randint(0, 262, (b, length), generator=g), mask


# name -> (model, call(model, **kw) -> output, the encoder's input array x [B, M, C], its key mask)
CASES = {
    "mlm": (
        lambda: MaskedLanguageModel(MaskedLanguageModelConfig.tiny()),
        lambda m, **kw: m(*_text(), **kw),
        lambda m: (m.input_adapter(_text()[0]), _text()[1].bool()),
    ),
    "sequence": (
        lambda: SequenceClassifier(SequenceClassifierConfig.tiny()),
        lambda m, **kw: m(*_text(), **kw),
        lambda m: (m.input_adapter(_text()[0]), _text()[1].bool()),
    ),
    "multitask": (
        lambda: MultitaskClassifier(MultitaskClassifierConfig.tiny()),
        lambda m, **kw: m(*_text(), **kw),
        lambda m: (m.input_adapter(_text()[0]), _text()[1].bool()),
    ),
    "image": (
        lambda: ImageClassifier(ImageClassifierConfig.tiny()),
        lambda m, **kw: m(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32), **kw),
        lambda m: (m.input_adapter(torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)), None),
    ),
    "set": (
        lambda: SetModel(SetModelConfig.tiny()),
        lambda m, **kw: m(torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2)), _set_mask(), **kw),
        lambda m: (torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2)), _set_mask()),
    ),
}


def _set_mask() -> torch.Tensor:
    return torch.arange(5).expand(2, 5) < torch.tensor([[4], [5]])


def _tensors(out: object) -> list[torch.Tensor]:
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_maps_equal_reference_and_outputs_unchanged(name):
    make, call, encoder_input = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        plain = call(model)
        out = call(model, return_attention=True)
        x, key_mask = encoder_input(model)
        z = model.encoder(x, key_mask)
    assert plain.encoder_attention is None and plain.decoder_attention is None  # nothing unless asked
    for a, b in zip(_tensors(plain), _tensors(out)):  # the maps are extra leaves at the end
        assert torch.equal(a, b)
    cross = model.encoder.cross_attention
    latents = model.encoder.latents.expand(x.shape[0], -1, -1)
    ref = _reference(cross.attention, cross.q_norm(latents), cross.kv_norm(x), key_mask)
    torch.testing.assert_close(out.encoder_attention.double(), ref, atol=1e-6, rtol=1e-5)
    enc_sums = out.encoder_attention.sum(-1)
    torch.testing.assert_close(enc_sums, torch.ones_like(enc_sums))
    if key_mask is not None:  # padded inputs get exactly 0
        masked = out.encoder_attention.permute(0, 3, 1, 2)[~key_mask]  # [masked, h, N]
        assert masked.numel() > 0 and torch.equal(masked, torch.zeros_like(masked))
    dec = model.decoder.cross_attention
    o = out.decoder_attention.shape[2]
    assert out.decoder_attention.shape == (x.shape[0], dec.attention.num_heads, o, z.shape[1])
    queries = model.output_queries(x)[:, :o]
    query_mask = key_mask if name in ("mlm", "set") else None  # the models that mask their queries
    ref = _reference(dec.attention, dec.q_norm(queries), dec.kv_norm(z), None, query_mask)
    torch.testing.assert_close(out.decoder_attention.double(), ref, atol=1e-6, rtol=1e-5)


def test_mlm_decoder_chunks_and_positions_give_the_same_maps():
    torch.manual_seed(0)
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    ids, mask = _text()
    with torch.no_grad():
        full = model(ids, mask, return_attention=True)
        chunked = model(ids, mask, chunk_size=5, return_attention=True)
        subset = model(ids, mask, positions=torch.tensor([1, 12]), return_attention=True)
        assert torch.equal(chunked.logits, model(ids, mask, chunk_size=5).logits)
    torch.testing.assert_close(chunked.decoder_attention, full.decoder_attention)
    torch.testing.assert_close(subset.decoder_attention, full.decoder_attention[:, :, [1, 12]])
    # official masking: the padded positions' queries are masked, their rows all 0
    assert torch.equal(full.decoder_attention[0, :, 10:], torch.zeros_like(full.decoder_attention[0, :, 10:]))


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_transformers_and_official_masking_in_a_task_model(masking):
    torch.manual_seed(0)
    model = SequenceClassifier(SequenceClassifierConfig.tiny(masking=masking)).eval()
    ids, mask = _text()
    mask[1] = 0  # a fully masked example
    with torch.no_grad():
        out = model(ids, mask, return_attention=True)
        plain = model(ids, mask)
    assert torch.equal(out.logits, plain.logits)
    p = out.encoder_attention
    assert torch.equal(p[0, ..., 10:], torch.zeros_like(p[0, ..., 10:]))
    if masking == "official":
        assert torch.equal(p[1], torch.zeros_like(p[1]))
    else:
        torch.testing.assert_close(p[1], torch.full_like(p[1], 1 / 16))


def test_flow_multimodal_and_plain_models_return_output_and_maps():
    torch.manual_seed(0)
    flow = OpticalFlow(OpticalFlowConfig.tiny()).eval()
    frames = torch.rand(1, 2, 3, 12, 16) * 2 - 1
    with torch.no_grad():
        plain = flow(frames, chunk_size=50)
        got, maps = flow(frames, chunk_size=50, return_attention=True)
    assert torch.equal(got, plain) and isinstance(maps, AttentionMaps)
    n = flow.config.encoder.num_latents
    assert maps.encoder.shape[2:] == (n, 12 * 16) and maps.decoder.shape[2:] == (12 * 16, n)
    torch.testing.assert_close(maps.decoder.sum(-1), torch.ones(maps.decoder.shape[:3]))

    mm = MultimodalAutoencoder(MultimodalAutoencoderConfig.tiny()).eval()
    inputs = {"audio": torch.randn(1, 128, 1), "image": torch.randn(1, 4, 3, 16, 16), "label": torch.randn(1, 5)}
    with torch.no_grad():
        plain = mm(inputs)
        got, maps = mm(inputs, return_attention=True)
    assert plain.keys() == got.keys() and all(torch.equal(plain[k], got[k]) for k in plain)
    torch.testing.assert_close(maps.encoder.sum(-1), torch.ones(maps.encoder.shape[:3]))

    io = PerceiverIO.from_config(_plain_config()).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        y, maps = io(x, return_attention=True)
    assert torch.equal(y, io(x)) and maps.encoder.shape == (2, 1, 4, 6) and maps.decoder.shape == (2, 1, 3, 4)


def _plain_config():
    from perceiverio.core import DecoderConfig, EncoderConfig, PerceiverIOConfig

    encoder = EncoderConfig(num_latents=4, num_latent_channels=16, num_self_attention_heads=2, num_blocks=1)
    return PerceiverIOConfig(
        encoder=encoder, decoder=DecoderConfig(num_query_channels=8), num_input_channels=8, num_output_queries=3
    )


@pytest.mark.parametrize("bad", [1, 0, "yes", None, torch.tensor(True)])
def test_return_attention_must_be_a_bool(bad):
    model = SequenceClassifier(SequenceClassifierConfig.tiny())
    with pytest.raises(ValueError, match="return_attention must be True or False"):
        model(*_text(), return_attention=bad)


def test_maps_in_training_with_gradient_checkpointing():
    torch.manual_seed(0)
    model = ImageClassifier(ImageClassifierConfig.tiny()).train()
    model.encoder.gradient_checkpointing = model.decoder.gradient_checkpointing = True
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    plain = model(images, labels)
    out = model(images, labels, return_attention=True)
    assert torch.equal(out.logits, plain.logits)
    out.loss.backward()  # the maps do not get in the way of training
    assert model.encoder.latents.grad is not None and out.encoder_attention.shape == (2, 1, 16, 32 * 32)
