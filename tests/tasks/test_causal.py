"""Perceiver AR (CausalLanguageModel): shapes, causality, padding, loss, cached generation, sampling semantics."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from perceiverio import CausalLanguageModel, CausalLanguageModelConfig
from perceiverio.tasks.sampling import choose, filter_logits, window_after_reencoding
from perceiverio.tokenizer import NUM_SPECIAL, PAD_ID

V = 262


def make(**overrides) -> CausalLanguageModel:
    torch.manual_seed(0)
    config = CausalLanguageModelConfig.tiny(zero_init_output=False, **overrides)
    return CausalLanguageModel(config).eval()


def ids(b: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(NUM_SPECIAL, V, (b, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_short_and_long_prefixes():
    model = make(max_context=32, num_latents=8)
    assert model(ids(2, 20)).logits.shape == (2, 8, V)
    assert model(ids(2, 5)).logits.shape == (2, 5, V)  # shorter than N: a shorter latent window
    long = ids(2, 50)
    out = model(long).logits
    assert out.shape == (2, 8, V)
    assert torch.allclose(out, model(long[:, -32:]).logits, atol=1e-6)  # only the last max_context tokens count


def test_fresh_model_predicts_uniform_bytes():
    model = CausalLanguageModel(CausalLanguageModelConfig.tiny())  # official zero-initialised output layer
    x = ids(2, 20)
    out = model(x, labels=x)
    assert torch.equal(out.logits, torch.zeros_like(out.logits))
    assert math.isclose(out.loss.item(), math.log(V), rel_tol=1e-6)


def test_changing_a_future_token_never_changes_earlier_logits():
    model = make()
    x = ids(1, 40)
    base = model(x).logits[0]  # rows for positions 24 .. 39 (16 latents)
    for j in (24, 30, 39):
        y = x.clone()
        y[0, j] = (y[0, j] + 7 - NUM_SPECIAL) % (V - NUM_SPECIAL) + NUM_SPECIAL
        changed = model(y).logits[0]
        row = j - 24
        assert torch.allclose(changed[:row], base[:row], atol=1e-5)
        assert not torch.allclose(changed[row], base[row], atol=1e-3)


def test_inputs_before_the_latents_reach_every_latent():
    model = make()
    x = ids(1, 40)
    y = x.clone()
    y[0, 3] = (y[0, 3] + 1 - NUM_SPECIAL) % (V - NUM_SPECIAL) + NUM_SPECIAL
    diff = (model(x).logits - model(y).logits).abs().amax(-1)[0]  # [N]
    assert bool((diff > 1e-5).all())


def test_left_padding_matches_the_unpadded_prefix():
    model = make()
    x = ids(1, 20)
    padded = torch.cat((torch.full((1, 6), PAD_ID), x), dim=1)
    mask = torch.cat((torch.zeros(1, 6), torch.ones(1, 20)), dim=1).long()
    out = model(padded, mask).logits  # latents at positions 10 .. 25 of the padded row = 4 .. 19 of x
    assert torch.allclose(out, model(x).logits, atol=1e-4)  # rotary positions are relative: the shift is invisible
    other = padded.clone()
    other[0, :6] = 100  # different padding content changes nothing
    assert torch.allclose(model(other, mask).logits, out, atol=1e-6)


def test_loss_is_the_mean_next_token_cross_entropy():
    model = make()
    x = ids(2, 30)
    labels = x.clone()
    labels[0, 20] = -100
    out = model(x, labels=labels)
    first = 30 - 16  # window position of latent 0
    total, count = 0.0, 0
    for b in range(2):
        for i in range(15):  # the last latent has no next token
            target = int(labels[b, first + i + 1])
            if target != -100:
                total -= float(torch.log_softmax(out.logits[b, i].detach().double(), -1)[target])
                count += 1
    assert count == 29
    assert math.isclose(float(out.loss), total / count, rel_tol=1e-5)


def test_loss_ignores_padding():
    model = make()
    x = ids(1, 20)
    padded = torch.cat((torch.full((1, 4), PAD_ID), x), dim=1)
    mask = (torch.arange(24) >= 4).long()[None]
    got = model(padded, mask, labels=padded).loss
    logits = model(x).logits[0]  # positions 4 .. 19 of x; padded window latents 8..23 <-> x 4..19
    expected = F.cross_entropy(logits[:-1], x[0, 5:20])
    assert torch.allclose(got, expected, atol=1e-5)


def test_cross_attend_dropout_only_in_training():
    model = make(cross_attend_dropout=0.5)
    x = ids(2, 40)
    reference = model(x).logits
    model.train()
    torch.manual_seed(3)
    dropped = model(x).logits
    assert not torch.allclose(dropped, reference, atol=1e-4) and bool(torch.isfinite(dropped).all())
    model.eval()
    assert torch.equal(model(x).logits, reference)


def test_tied_output_uses_the_embedding():
    model = make(tied_output=True)
    assert model.head is None
    x = ids(1, 20)
    z = torch.randn(1, 3, 64)
    assert torch.allclose(model.logits(z), model.norm(z) @ model.embedding.weight.T + model.head_bias)
    assert model(x).logits.shape == (1, 16, V)


def test_step_equals_the_last_row_of_encode():
    model = make()
    x = ids(2, 30)
    full, _ = model.encode(x, 10)
    _, kv = model.encode(x[:, :-1], 9)
    caches = model.start_cache(kv, 0)  # full buffers: the first step grows them
    logits = model.step(x[:, -1:], 29, caches)
    assert torch.allclose(logits, full[:, -1], atol=1e-5)
    assert caches[0].length == 30 and caches[1].length == 10
    assert torch.equal(caches[0].keys_values()[0][:, :, :29], kv[0][0])  # the kept keys, unchanged


@pytest.mark.parametrize(
    ("sizes", "prompt", "new"),
    [
        (dict(max_context=32, num_latents=8), 5, 70),  # slides the window twice
        (dict(max_context=24, num_latents=1), 3, 40),  # one latent: a re-encoding at every step
        (dict(max_context=16, num_latents=16), 40, 20),  # prompt longer than max_context, N == max_context
    ],
)
def test_cached_generation_gives_the_uncached_tokens(sizes, prompt, new):
    model = make(**sizes)
    p = ids(2, prompt, seed=5)
    greedy = model.generate(p, new, temperature=0)
    assert greedy.shape == (2, prompt + new) and torch.equal(greedy[:, :prompt], p)
    assert torch.equal(greedy, model.generate(p, new, temperature=0, use_cache=False))
    sampled = model.generate(p, new, temperature=1.5, top_k=50, top_p=0.95, seed=11)
    assert torch.equal(sampled, model.generate(p, new, temperature=1.5, top_k=50, top_p=0.95, seed=11, use_cache=False))
    assert not torch.equal(sampled, greedy)


def test_window_schedule():
    assert window_after_reencoding(10, 32, 8, False) == (0, 6)  # everything fits: latents the last N/2
    assert window_after_reencoding(10, 32, 8, True) == (0, 2)  # the prompt: N latents, as forward
    assert window_after_reencoding(3, 32, 8, False) == (0, 0)
    assert window_after_reencoding(40, 32, 8, False) == (12, 36)  # inputs the last max_context - N/2
    assert window_after_reencoding(40, 32, 8, True) == (12, 32)
    assert window_after_reencoding(40, 32, 1, False) == (8, 39)


def test_greedy_is_the_argmax_of_forward():
    model = make()
    p = ids(1, 12)
    out = model.generate(p[0], 1, temperature=0)
    assert out.shape == (13,)
    assert int(out[-1]) == int(model(p).logits[0, -1].argmax())


def test_seed_determinism():
    model = make()
    p = ids(1, 8)
    a = model.generate(p, 30, seed=1)
    assert torch.equal(a, model.generate(p, 30, seed=1))
    assert torch.equal(a, model.generate(p, 30, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, model.generate(p, 30, seed=2))


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.05, 0.3, 0.15]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, True, False, True]]
    assert torch.isinf(filter_logits(logits, None, 0.8)).tolist() == [[False, True, False, True]]  # 0.5+0.3
    assert torch.isinf(filter_logits(logits, None, 0.81)).tolist() == [[False, True, False, False]]
    assert torch.isinf(filter_logits(logits, None, 0.1)).tolist() == [[False, True, True, True]]  # top one stays
    assert torch.equal(filter_logits(logits, None, 1.0), logits)


def test_temperature_shapes_the_sampled_distribution():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(20000, 3)
    g = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5, 2.0):
        counts = torch.bincount(choose(logits, temperature, None, None, g), minlength=3).double() / 20000
        expected = torch.softmax(logits[0].double() / temperature, -1)
        assert torch.allclose(counts, expected, atol=0.015), (temperature, counts, expected)
    assert torch.equal(choose(logits[:5], 0.0, None, None, g), torch.zeros(5, dtype=torch.long))
    assert bool((choose(logits[:200], 1.0, 1, None, g) == 0).all())  # top_k=1 is greedy
    assert bool((choose(logits[:200], 1e-30, None, None, g) == 0).all())  # a tiny temperature: greedy, no NaN


def test_stop_bytes_end_rows_with_padding():
    model = CausalLanguageModel(CausalLanguageModelConfig.tiny())  # zero head: logits = bias
    with torch.no_grad():
        model.head.bias[ord("\n") + NUM_SPECIAL] = 5.0
    p = ids(2, 4)
    out = model.generate(p, 10, temperature=0, stop_bytes=b"\n")
    assert out.shape == (2, 5) and (out[:, -1] == ord("\n") + NUM_SPECIAL).all()
    model.head.bias.data.zero_()
    model.head.bias.data[ord("a") + NUM_SPECIAL] = 5.0
    assert model.generate(p, 6, temperature=0, stop_bytes=b"\n").shape == (2, 10)  # never stops: max_new_tokens


def test_generate_restores_training_mode():
    model = make()
    model.train()
    model.generate(ids(1, 4), 3, temperature=0)
    assert model.training


def test_export_forward_without_graph_breaks():
    model = make()
    x = ids(2, 40)
    exported = torch.export.export(model, (x,), strict=False)
    assert torch.allclose(exported.module()(x).logits, model(x).logits, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m(torch.rand(2, 5)), "input_ids must be an integer"),
        (lambda m: m(torch.tensor([[1, 300]])), "input_ids must lie in"),
        (lambda m: m(torch.ones(2, 5, dtype=torch.long), labels=torch.ones(2, 4, dtype=torch.long)), "labels"),
        (lambda m: m(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 3)), "attention_mask"),
        (lambda m: m.generate(torch.ones(2, 2, 2, dtype=torch.long), 3), "prompt_ids"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), -1), "max_new_tokens"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), 2, temperature=-1.0), "temperature"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), 2, top_k=0), "top_k"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), 2, top_p=1.5), "top_p"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), 2, stop_bytes="\n"), "stop_bytes"),
        (lambda m: m.generate(torch.ones(3, dtype=torch.long), 2, seed=1, generator=torch.Generator()), "seed"),
    ],
)
def test_input_contracts(call, match):
    with pytest.raises(ValueError, match=match):
        call(make())


def test_config_validation_and_presets():
    base = CausalLanguageModelConfig.official_base()
    assert (base.max_context, base.num_latents, base.num_latent_channels, base.num_self_attention_layers) == (
        1024,
        1024,
        1024,
        12,
    )
    assert base.rotary_fraction == 0.5 and base.wavelength == 1024 and base.activation == "sq_relu"
    with pytest.raises(ValueError, match="num_latents"):
        CausalLanguageModelConfig.tiny(num_latents=100)
    with pytest.raises(ValueError, match="tied_output"):
        CausalLanguageModelConfig.tiny(tied_output=True, num_latent_channels=32)
    with pytest.raises(ValueError, match="cross_attend_dropout"):
        dataclasses.replace(CausalLanguageModelConfig.tiny(), cross_attend_dropout=1.0)


def test_compile_forward_without_graph_breaks():
    model = make()
    x = ids(2, 40)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # dynamo only: fails on any graph break
    out = compiled(x, labels=x)
    reference = model(x, labels=x)
    assert torch.allclose(out.logits, reference.logits, atol=1e-6) and torch.allclose(out.loss, reference.loss)


def test_fused_causal_path_equals_the_explicit_mask():
    """Without padding the latent self-attention uses the fused kernel's causal mask; an all-ones attention_mask
    takes the explicit-mask path: the same numbers."""
    model = make()
    x = ids(2, 40, seed=3)
    with torch.no_grad():
        fused = model(x).logits
        explicit = model(x, torch.ones_like(x)).logits
    assert torch.allclose(fused, explicit, atol=1e-5)
