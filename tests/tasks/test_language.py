"""Byte-level language models and the generic PerceiverIO: shapes, masking invariances, exact subset/chunked
decoding, weight sharing, parameter counts, gradients, FLOP scaling, losses and input validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from perceiverio import (
    DecoderConfig,
    EncoderConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    PerceiverIO,
    PerceiverIOConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from perceiverio.core import PerceiverEncoder

V = 262
TOL = dict(rtol=1e-5, atol=1e-5)


def _mlm(**overrides) -> MaskedLanguageModel:
    return MaskedLanguageModel(MaskedLanguageModelConfig.tiny(**overrides)).eval()


def _ids(b: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(6, V, (b, length), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("length", [1, 7, 256])
def test_mlm_output_shape_any_length(length):
    model = _mlm()
    out = model(_ids(2, length))
    assert out.logits.shape == (2, length, V)
    assert out.loss is None and out.positions is None
    assert torch.isfinite(out.logits).all()


def test_classifier_output_shapes():
    clf = SequenceClassifier(SequenceClassifierConfig.tiny(num_classes=5)).eval()
    assert clf(_ids(3, 9)).logits.shape == (3, 5)
    multi = MultitaskClassifier(MultitaskClassifierConfig.tiny(tasks={"a": 2, "b": 3, "r": 1})).eval()
    out = multi(_ids(3, 9))
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {"a": (3, 2), "b": (3, 3), "r": (3, 1)}
    assert out.loss is None and out.task_losses == {}


# ---------------------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_mlm_padding_invariance(masking):
    model = _mlm(masking=masking)
    short, long = _ids(1, 10, seed=1), _ids(1, 23, seed=2)
    alone = model(short).logits[0]  # [10, V]
    ids = torch.zeros(2, 23, dtype=torch.long)
    ids[0, :10], ids[1] = short[0], long[0]
    mask = torch.zeros(2, 23, dtype=torch.long)
    mask[0, :10], mask[1] = 1, 1
    batched = model(ids, mask).logits
    torch.testing.assert_close(batched[0, :10], alone, **TOL)
    torch.testing.assert_close(batched[1], model(long).logits[0], **TOL)
    # what sits in the padding does not matter
    ids2 = ids.clone()
    ids2[0, 10:] = _ids(1, 13, seed=3)[0]
    torch.testing.assert_close(model(ids2, mask).logits[0, :10], batched[0, :10], **TOL)
    # extra padding on an example that is alone in its batch
    padded = torch.cat([short, torch.zeros(1, 40, dtype=torch.long)], dim=1)
    pmask = (torch.arange(50) < 10).long()[None]
    torch.testing.assert_close(model(padded, pmask).logits[0, :10], alone, **TOL)


def test_mlm_without_mask_sees_padding():
    """Sanity check that the invariance above is the mask's doing: unmasked padding changes the logits."""
    model = _mlm()
    short = _ids(1, 10, seed=1)
    padded = torch.cat([short, torch.zeros(1, 13, dtype=torch.long)], dim=1)
    assert not torch.allclose(model(padded).logits[0, :10], model(short).logits[0], **TOL)


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_classifier_padding_invariance(masking):
    for model in (
        SequenceClassifier(SequenceClassifierConfig.tiny(num_classes=3, masking=masking)).eval(),
        MultitaskClassifier(MultitaskClassifierConfig.tiny(masking=masking)).eval(),
    ):
        short, long = _ids(1, 6, seed=4), _ids(1, 17, seed=5)
        ids = torch.zeros(2, 17, dtype=torch.long)
        ids[0, :6], ids[1] = short[0], long[0]
        mask = torch.ones(2, 17, dtype=torch.bool)
        mask[0, 6:] = False
        batched, alone, alone_long = model(ids, mask).logits, model(short).logits, model(long).logits
        if isinstance(batched, dict):
            for k in batched:
                torch.testing.assert_close(batched[k][0], alone[k][0], **TOL)
                torch.testing.assert_close(batched[k][1], alone_long[k][0], **TOL)
        else:
            torch.testing.assert_close(batched[0], alone[0], **TOL)
            torch.testing.assert_close(batched[1], alone_long[0], **TOL)


@pytest.mark.parametrize("masking", ["official", "transformers"])
def test_fully_padded_example_is_finite(masking):
    model = _mlm(masking=masking)
    ids = _ids(2, 8)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1] = 0
    out = model(ids, mask)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.logits[0], model(ids[:1]).logits[0], **TOL)


# ---------------------------------------------------------------------------------------------------- subsets


def test_decode_positions_equals_rows_of_full_decoding():
    model = _mlm()
    ids = _ids(2, 30)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 20:] = 0
    full = model(ids, mask).logits
    pos = torch.tensor([[0, 29, 5, 5], [3, 25, 19, 1]])  # includes a padded position and a repeat
    sub = model(ids, mask, positions=pos)
    assert sub.logits.shape == (2, 4, V)
    assert torch.equal(sub.positions, pos)
    torch.testing.assert_close(sub.logits, full.gather(1, pos[..., None].expand(-1, -1, V)), **TOL)
    shared = model(ids, mask, positions=torch.tensor([7, 2]))  # [K] broadcast over the batch
    torch.testing.assert_close(shared.logits, full[:, [7, 2]], **TOL)


def test_decode_labeled_only_gives_same_loss():
    model = _mlm()
    ids = _ids(3, 40)
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[2, 25:] = 0
    labels = torch.full((3, 40), -100)
    labels[0, [1, 4, 5, 30]] = ids[0, [1, 4, 5, 30]]
    labels[1, [39]] = ids[1, 39]
    # row 2: no labels at all
    full = model(ids, mask, labels=labels)
    subset = model(ids, mask, labels=labels, decode_labeled_only=True)
    torch.testing.assert_close(subset.loss, full.loss, **TOL)
    assert subset.logits.shape == (3, 4, V)
    torch.testing.assert_close(subset.positions[0], torch.tensor([1, 4, 5, 30]))
    assert int(subset.positions[1, 0]) == 39
    torch.testing.assert_close(subset.logits[0], full.logits[0, [1, 4, 5, 30]], **TOL)
    torch.testing.assert_close(subset.logits[1, 0], full.logits[1, 39], **TOL)
    with pytest.raises(ValueError):
        model(ids, mask, decode_labeled_only=True)  # needs labels


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunked_decoding_equals_unchunked(chunk):
    model = _mlm()
    ids = _ids(2, 20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 12:] = False
    z = model.encode(ids, mask)
    q = model.output_queries(torch.zeros(2, 1, 1), torch.arange(20))
    whole = model.decoder(q, z, mask)
    torch.testing.assert_close(model.decoder(q, z, mask, chunk_size=chunk), whole, **TOL)
    torch.testing.assert_close(model(ids, mask, chunk_size=chunk).logits, model(ids, mask).logits, **TOL)


def test_chunk_size_must_be_positive():
    model = _mlm()
    z = model.encode(_ids(1, 5))
    with pytest.raises(ValueError):
        model.decoder(model.output_queries(torch.zeros(1, 1, 1), torch.arange(5)), z, chunk_size=0)


# ---------------------------------------------------------------------------------------------------- params


def _cross_block_params(q: int, kv: int, qk: int, v: int, w: int) -> int:
    norms = 2 * q + 2 * kv + 2 * q
    attention = (q * qk + qk) + (kv * qk + qk) + (kv * v + v) + (v * q + q)
    mlp = (q * w * q + w * q) + (w * q * q + q)
    return norms + attention + mlp


def _self_block_params(d: int, qk: int, v: int, w: int) -> int:
    return 4 * d + 2 * (d * qk + qk) + (d * v + v) + (v * d + d) + (d * w * d + w * d) + (w * d * d + d)


def _encoder_params(cfg: EncoderConfig, c: int) -> int:
    d = cfg.num_latent_channels
    cross_qk = cfg.qk_channels or c
    cross_v = cfg.v_channels or cross_qk
    self_qk = cfg.qk_channels or d
    self_v = cfg.v_channels or self_qk
    return (
        cfg.num_latents * d
        + _cross_block_params(d, c, cross_qk, cross_v, cfg.cross_attention_widening_factor)
        + cfg.num_self_attends_per_block * _self_block_params(d, self_qk, self_v, cfg.self_attention_widening_factor)
    )


def _decoder_params(cfg: DecoderConfig, d: int) -> int:
    e = cfg.num_query_channels
    qk = cfg.qk_channels or d
    v = cfg.v_channels or qk
    out = cfg.num_output_channels
    return _cross_block_params(e, d, qk, v, cfg.widening_factor) + (e * out + out if out else 0)


def _mlm_params(cfg: MaskedLanguageModelConfig) -> int:
    c, e = cfg.num_input_channels, cfg.decoder.num_query_channels
    return (
        cfg.vocab_size * c
        + cfg.max_seq_len * c
        + _encoder_params(cfg.encoder, c)
        + cfg.max_seq_len * e
        + _decoder_params(cfg.decoder, cfg.encoder.num_latent_channels)
        + cfg.vocab_size
    )


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_weight_sharing_parameter_count():
    base = EncoderConfig(
        num_latents=8,
        num_latent_channels=32,
        num_cross_attention_heads=2,
        num_self_attention_heads=4,
        num_self_attends_per_block=2,
        qk_channels=16,
        v_channels=32,
        cross_attention_widening_factor=2,
        self_attention_widening_factor=3,
    )
    one = PerceiverEncoder(base, 24)
    three = PerceiverEncoder(dataclasses.replace(base, num_blocks=3), 24)
    assert _count(one) == _count(three) == _encoder_params(base, 24)
    default = EncoderConfig(
        num_latents=8, num_latent_channels=32, num_self_attention_heads=4, num_self_attends_per_block=3
    )
    assert _count(PerceiverEncoder(default, 24)) == _encoder_params(default, 24)


def test_weight_sharing_applies_the_same_layers_repeatedly():
    base = EncoderConfig(
        num_latents=8, num_latent_channels=32, num_self_attention_heads=4, num_self_attends_per_block=2
    )
    one = PerceiverEncoder(base, 24).eval()
    three = PerceiverEncoder(dataclasses.replace(base, num_blocks=3), 24).eval()
    three.load_state_dict(one.state_dict())
    x = torch.randn(2, 11, 24)
    z = one.cross_attention(one.latents.expand(2, -1, -1), x)
    for _ in range(3):
        for layer in one.self_attention:
            z = layer(z)
    torch.testing.assert_close(three(x), z, **TOL)
    assert not torch.allclose(three(x), one(x), **TOL)


def test_tiny_model_parameter_counts_closed_form():
    cfg = MaskedLanguageModelConfig.tiny()
    assert _mlm().num_parameters() == _mlm_params(cfg)
    clf_cfg = SequenceClassifierConfig.tiny(num_classes=4)
    clf = SequenceClassifier(clf_cfg)
    dec = dataclasses.replace(clf_cfg.decoder, num_output_channels=4)
    c = clf_cfg.num_input_channels
    expected = (
        V * c
        + clf_cfg.max_seq_len * c
        + _encoder_params(clf_cfg.encoder, c)
        + dec.num_query_channels
        + _decoder_params(dec, clf_cfg.encoder.num_latent_channels)
    )
    assert clf.num_parameters() == expected


def test_language_perceiver_parameter_count_matches_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = MaskedLanguageModelConfig.language_perceiver()
    assert _mlm_params(cfg) == 201_108_230
    with torch.device("meta"):
        ours = MaskedLanguageModel(cfg)
        hf = transformers.PerceiverForMaskedLM(transformers.PerceiverConfig(qk_channels=256, v_channels=1280))
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters()) == 201_108_230


# ---------------------------------------------------------------------------------------------------- grads


def _assert_every_param_gets_gradient(model: torch.nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    nonfinite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not missing and not zero and not nonfinite, (missing, zero, nonfinite)


def test_gradients_reach_every_parameter_mlm():
    model = _mlm(max_seq_len=16).train()
    ids = _ids(2, 16)
    out = model(ids, labels=ids)  # every position labelled, full length: every table row is used
    out.loss.backward()
    _assert_every_param_gets_gradient(model)


def test_gradients_reach_every_parameter_classifier():
    model = SequenceClassifier(SequenceClassifierConfig.tiny(num_classes=3, max_seq_len=12)).train()
    model(_ids(3, 12), labels=torch.tensor([0, 2, 1])).loss.backward()
    _assert_every_param_gets_gradient(model)


def test_gradients_reach_every_parameter_multitask():
    model = MultitaskClassifier(MultitaskClassifierConfig.tiny(tasks={"a": 2, "b": 3, "r": 1}, max_seq_len=12)).train()
    labels = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([2, 0, 1]), "r": torch.tensor([0.5, -1.0, 2.0])}
    model(_ids(3, 12), labels=labels).loss.backward()
    _assert_every_param_gets_gradient(model)


# ---------------------------------------------------------------------------------------------------- FLOPs


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flops(model, *args, **kwargs) -> dict[str, int]:
    # torch's counter has no formula for the CPU flash-attention kernel (it would count 0 for Q·Kᵀ and A·V)
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(*args, **kwargs)
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


_GENERIC = PerceiverIOConfig(
    num_input_channels=16,
    num_output_queries=1024,
    encoder=EncoderConfig(
        num_latents=8,
        num_latent_channels=32,
        num_cross_attention_heads=2,
        num_self_attention_heads=4,
        num_self_attends_per_block=2,
    ),
    decoder=DecoderConfig(num_query_channels=24, num_output_channels=5, num_heads=2),
)


def test_encoder_cross_attention_flops_linear_in_inputs():
    model = PerceiverIO.from_config(_GENERIC)
    b, c, n, d = 2, 16, 8, 32
    counts = {m: _flops(model, torch.randn(b, m, c), query_index=torch.arange(4)) for m in (256, 512, 1024)}
    cross = {m: f["PerceiverIO.encoder.cross_attention"] for m, f in counts.items()}
    # closed form (2 FLOPs per multiply-add): q, k, v, attention logits and weighted sum, out, MLP
    for m, f in cross.items():
        assert f == 2 * b * (n * d * c + 2 * m * c * c + n * m * (c + c) + n * c * d + 2 * n * d * d)
    assert cross[1024] - cross[512] == 2 * (cross[512] - cross[256])
    assert 1.9 < cross[1024] / cross[512] <= 2.0
    # the latent stack does not depend on M at all
    stack = {m: f["PerceiverIO.encoder"] - cross[m] for m, f in counts.items()}
    assert stack[256] == stack[512] == stack[1024] > 0


def test_decoder_flops_linear_in_queries():
    model = PerceiverIO.from_config(_GENERIC)
    x = torch.randn(2, 64, 16)
    counts = {o: _flops(model, x, query_index=torch.arange(o)) for o in (256, 512, 1024)}
    dec = {o: f["PerceiverIO.decoder"] for o, f in counts.items()}
    b, n, d, e = 2, 8, 32, 24
    for o, f in dec.items():
        expected = 2 * b * (o * e * d + 2 * n * d * d + o * n * 2 * d + o * d * e + 2 * o * e * e + o * e * 5)
        assert f == expected
    assert dec[1024] - dec[512] == 2 * (dec[512] - dec[256])
    assert 1.9 < dec[1024] / dec[512] <= 2.0
    enc = {o: f["PerceiverIO.encoder"] for o, f in counts.items()}
    assert enc[256] == enc[512] == enc[1024]


# ---------------------------------------------------------------------------------------------------- losses


def test_mlm_loss_is_cross_entropy_over_labelled_positions():
    model = _mlm()
    ids = _ids(2, 12)
    labels = torch.full((2, 12), -100)
    labels[0, [2, 3]] = torch.tensor([100, 7])
    labels[1, [0, 11, 5]] = torch.tensor([9, 200, 261])
    out = model(ids, labels=labels)
    logp = out.logits.log_softmax(-1)
    terms = [-logp[b, i, labels[b, i]] for b in range(2) for i in range(12) if labels[b, i] != -100]
    torch.testing.assert_close(out.loss, torch.stack(terms).mean(), **TOL)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, V), labels.reshape(-1)), **TOL)


def test_classifier_losses():
    clf = SequenceClassifier(SequenceClassifierConfig.tiny(num_classes=3)).eval()
    ids, y = _ids(4, 9), torch.tensor([0, 2, -100, 1])
    out = clf(ids, labels=y)
    logp = out.logits.log_softmax(-1)
    torch.testing.assert_close(out.loss, -(logp[0, 0] + logp[1, 2] + logp[3, 1]) / 3, **TOL)
    with pytest.raises(ValueError):
        clf(ids, labels=torch.tensor([0.0, 1.0, 1.0, 0.0]))  # float class ids


def test_regression_uses_mse():
    reg = SequenceClassifier(SequenceClassifierConfig.tiny(num_classes=1)).eval()
    ids, y = _ids(3, 9), torch.tensor([0.5, -1.0, 3.0])
    out = reg(ids, labels=y)
    assert out.logits.shape == (3, 1)
    torch.testing.assert_close(out.loss, ((out.logits[:, 0] - y) ** 2).mean(), **TOL)


def test_multitask_loss_averages_labelled_tasks_only():
    model = MultitaskClassifier(MultitaskClassifierConfig.tiny(tasks={"a": 2, "b": 3, "r": 1})).eval()
    ids = _ids(3, 9)
    logits = model(ids).logits
    ya, yb = torch.tensor([1, -100, 0]), torch.tensor([-100, -100, -100])
    out = model(ids, labels={"a": ya, "b": yb})
    la = F.cross_entropy(logits["a"][[0, 2]], torch.tensor([1, 0]))
    # b has no labelled example: its loss is 0 and it is left out of the mean (computed without reading values)
    assert set(out.task_losses) == {"a", "b"} and float(out.task_losses["b"]) == 0.0
    torch.testing.assert_close(out.task_losses["a"], la, **TOL)
    torch.testing.assert_close(out.loss, la, **TOL)
    yr = torch.tensor([0.5, -100.0, 2.0])
    out = model(ids, labels={"a": ya, "b": torch.tensor([2, 0, -100]), "r": yr})
    lb = F.cross_entropy(logits["b"][[0, 1]], torch.tensor([2, 0]))
    lr = ((logits["r"][[0, 2], 0] - torch.tensor([0.5, 2.0])) ** 2).mean()
    torch.testing.assert_close(out.task_losses["b"], lb, **TOL)
    torch.testing.assert_close(out.task_losses["r"], lr, **TOL)
    torch.testing.assert_close(out.loss, (la + lb + lr) / 3, **TOL)
    assert float(model(ids, labels={"b": yb}).loss) == 0.0
    assert model(ids).loss is None


# ---------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randint(6, 262, (10,)), "rank"),
        (torch.randint(6, 262, (1, 2, 3)), "rank"),
        (torch.rand(2, 5), "integer"),
        (torch.full((2, 5), 262), r"\[0, 262\)"),
        (torch.full((2, 5), -1), r"\[0, 262\)"),
        (torch.randint(6, 262, (1, 257)), "max_seq_len"),
        (torch.zeros(0, 5, dtype=torch.long), "non-empty"),
        (torch.zeros(2, 0, dtype=torch.long), "non-empty"),
        ([[1, 2, 3]], "torch.Tensor"),
    ],
)
def test_bad_token_ids_raise(bad, match):
    for model in (
        _mlm(),
        SequenceClassifier(SequenceClassifierConfig.tiny()),
        MultitaskClassifier(MultitaskClassifierConfig.tiny()),
    ):
        with pytest.raises(ValueError, match=match):
            model(bad)


def test_bad_masks_raise():
    model = _mlm()
    ids = _ids(2, 5)
    with pytest.raises(ValueError, match="shape"):
        model(ids, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model(ids, torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="bool or integer"):
        model(ids, torch.ones(2, 5))
    # integer and bool masks are equivalent
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(model(ids, m).logits, model(ids, m.bool()).logits, rtol=0, atol=0)


def test_bad_labels_and_positions_raise():
    model = _mlm()
    ids = _ids(2, 5)
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="positions"):
        model(ids, positions=torch.tensor([5]))
    with pytest.raises(ValueError, match="positions"):
        model(ids, positions=torch.tensor([0.0]))
    clf = SequenceClassifier(SequenceClassifierConfig.tiny())
    with pytest.raises(ValueError, match="labels"):
        clf(ids, labels=torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        clf(ids, labels=torch.zeros(3, dtype=torch.long))
    multi = MultitaskClassifier(MultitaskClassifierConfig.tiny())
    with pytest.raises(ValueError, match="unknown task"):
        multi(ids, labels={"nope": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(ValueError, match="labels"):
        multi(ids, labels={"a": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match="labels"):
        multi(ids, labels={"a": torch.zeros(2, 1, dtype=torch.long)})


def test_generic_perceiver_input_validation():
    model = PerceiverIO.from_config(_GENERIC)
    with pytest.raises(ValueError, match="16 channels"):
        model(torch.randn(2, 5, 15))
    with pytest.raises(ValueError, match="rank 3"):
        model(torch.randn(2, 16))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.ones(2, 5, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.randn(0, 5, 16))
    with pytest.raises(ValueError, match="input_mask"):
        model(torch.randn(2, 5, 16), input_mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="input_mask"):
        model(torch.randn(2, 5, 16), input_mask=torch.ones(2, 5))
    out = model(torch.randn(2, 5, 16), query_index=torch.arange(3))
    assert out.shape == (2, 3, 5)


# ---------------------------------------------------------------------------------------------------- configs


def test_encoder_config_validation():
    with pytest.raises(ValueError, match="num_latent_channels"):
        EncoderConfig(num_latent_channels=128, v_channels=64)
    with pytest.raises(ValueError, match="num_latent_channels"):
        EncoderConfig(num_latent_channels=128, qk_channels=64)  # v defaults to qk
    EncoderConfig(num_latent_channels=128, qk_channels=64, v_channels=128)
    for field in ("num_latents", "num_self_attention_heads", "num_blocks"):
        with pytest.raises(ValueError, match=field):
            EncoderConfig(**{field: 0})
    with pytest.raises(ValueError):
        DecoderConfig(num_query_channels=0)
    with pytest.raises(ValueError):
        DecoderConfig(num_query_channels=8, num_output_channels=0)


@pytest.mark.parametrize(
    "make",
    [
        # self-attention heads do not divide D = 128
        lambda: _mlm(encoder=dataclasses.replace(MaskedLanguageModelConfig.tiny().encoder, num_self_attention_heads=3)),
        # cross-attention heads do not divide qk = 64
        lambda: _mlm(
            encoder=dataclasses.replace(MaskedLanguageModelConfig.tiny().encoder, num_cross_attention_heads=5)
        ),
        # decoder heads do not divide qk = 64
        lambda: _mlm(decoder=dataclasses.replace(MaskedLanguageModelConfig.tiny().decoder, num_heads=7)),
        lambda: PerceiverIO.from_config(
            dataclasses.replace(_GENERIC, encoder=dataclasses.replace(_GENERIC.encoder, num_cross_attention_heads=3))
        ),
    ],
    ids=["self", "cross", "decoder", "generic_cross"],
)
def test_heads_must_divide_channels(make):
    with pytest.raises(ValueError, match="divisible"):
        make()


def test_bad_activation_and_masking_strings():
    for cls in (MaskedLanguageModelConfig, SequenceClassifierConfig, MultitaskClassifierConfig):
        with pytest.raises(ValueError, match="activation"):
            cls.tiny(activation="relu")
        with pytest.raises(ValueError, match="masking"):
            cls.tiny(masking="hf")
    with pytest.raises(ValueError, match="activation"):
        dataclasses.replace(_GENERIC, activation="swish")
    with pytest.raises(ValueError, match="masking"):
        dataclasses.replace(_GENERIC, masking="none")


def test_task_config_validation():
    with pytest.raises(ValueError, match="tied"):
        MaskedLanguageModelConfig.tiny(num_input_channels=32)
    with pytest.raises(ValueError):
        SequenceClassifierConfig.tiny(num_classes=0)
    with pytest.raises(ValueError):
        MultitaskClassifierConfig.tiny(tasks={})
    with pytest.raises(ValueError):
        MultitaskClassifierConfig.tiny(tasks=(("a", 2), ("a", 3)))
    with pytest.raises(ValueError):
        MultitaskClassifierConfig.tiny(tasks={"a": 0})
