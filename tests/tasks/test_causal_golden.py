"""CausalLanguageModel against the official Perceiver AR (google-research/perceiver-ar, Haiku) on golden outputs.

``tests/data/golden_perceiver_ar/golden.npz`` (see its README) holds a tiny random official model's parameters,
three right-padded sequences (lengths 32, 20, 5; N = 8 latents, so row 2 has three invalid latents), the official
masks, positions, intermediate activations and logits. The parameters go through
:func:`perceiverio.weights.causal.causal_from_haiku`; then

* the model's own forward (left padding, window positions 0 .. M-1, which equal the official data positions up to
  a shift, and rotary depends only on differences) must give ``logits_data_positions`` on every valid latent;
* our blocks, driven with the official right-padded layout, masks (masked scores at -1e30, so an invalid latent's
  fully masked cross-attention row is a uniform average) and terminal-relative positions, must give every captured
  activation (``act/cross_attention``, ``act/self_attention``, ``act/self_attention_1``) and ``logits_terminal`` on
  all latents, invalid ones included; with the data positions, ``logits_data_positions`` on all latents.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from perceiverio.tasks.causal import CausalLanguageModel, CausalLanguageModelConfig
from perceiverio.weights.causal import causal_from_haiku, causal_model_from_haiku

GOLDEN = Path(__file__).parents[1] / "data" / "golden_perceiver_ar" / "golden.npz"
ATOL = 1e-5
CONFIG = CausalLanguageModelConfig(
    vocab_size=262,
    max_context=32,
    num_latents=8,
    num_input_channels=32,
    num_latent_channels=32,
    num_cross_attention_heads=2,
    num_self_attention_heads=2,
    num_self_attention_layers=2,
    cross_attention_widening_factor=4,
    self_attention_widening_factor=4,
    activation="sq_relu",
    dropout=0.0,
    rotary_fraction=0.5,
    max_wavelength=32,
    tied_output=False,
)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    with np.load(GOLDEN) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


@pytest.fixture(scope="module")
def model() -> CausalLanguageModel:
    model = causal_model_from_haiku(GOLDEN, CONFIG)  # every parameter from exactly one array, shapes checked
    assert not model.training
    return model


def lengths(golden: dict[str, torch.Tensor]) -> list[int]:
    return [int(t) for t in (golden["inputs"] != 0).sum(1)]


def left_padded(golden: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The golden right-padded rows moved to the right end (our model pads on the left), and their mask."""
    ids = golden["inputs"].long()
    moved, mask = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
    for b, t in enumerate(lengths(golden)):
        moved[b, ids.shape[1] - t :], mask[b, ids.shape[1] - t :] = ids[b, :t], True
    return moved, mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_converter_maps_every_array_and_transposes_linears(golden):
    state = causal_from_haiku(GOLDEN)
    assert set(state) == set(CausalLanguageModel(CONFIG).state_dict())
    params = "params/perceiver_ar/~/"
    assert torch.equal(state["to_latents.weight"], golden[f"{params}linear/w"].T)
    assert torch.equal(
        state["cross_attention.attention.k_proj.weight"], golden[f"{params}cross_attention/attention/linear_1/w"].T
    )
    assert torch.equal(state["self_attention.1.mlp.fc2.weight"], golden[f"{params}self_attention_1/dense/linear_1/w"].T)
    assert torch.equal(state["head.weight"], golden[f"{params}logits/w"].T)
    assert torch.equal(state["norm.weight"], golden["params/perceiver_ar/layer_norm/scale"])
    flat = {k[len("params/") :]: v for k, v in golden.items() if k.startswith("params/")}
    with pytest.raises(ValueError, match="missing Haiku keys: perceiver_ar/~/logits/b"):
        causal_from_haiku({k: v for k, v in flat.items() if k != "perceiver_ar/~/logits/b"})
    with pytest.raises(ValueError, match="unexpected Haiku keys: perceiver_ar/~/extra/w"):
        causal_from_haiku({**flat, "perceiver_ar/~/extra/w": torch.zeros(1)})
    with pytest.raises(ValueError, match="perceiver_ar/~/linear/w has shape"):
        causal_model_from_haiku({**flat, "perceiver_ar/~/linear/w": torch.zeros(32, 33)}, CONFIG)
    with pytest.raises(ValueError, match="perceiver_ar/~/self_attention_2 is absent"):
        causal_model_from_haiku(flat, dataclasses.replace(CONFIG, num_self_attention_layers=3))
    loaded = CausalLanguageModel(CONFIG)
    loaded.load_state_dict(state)  # strict
    assert all(torch.equal(t, state[name]) for name, t in loaded.state_dict().items())


def test_forward_matches_official_logits_on_valid_latents(model, golden):
    ids, mask = left_padded(golden)
    seen = []
    handle = model.embedding.register_forward_hook(lambda module, args, out: seen.append(out))  # returns None
    try:
        with torch.no_grad():
            logits = model(ids, attention_mask=mask).logits  # [B, N, V]
    finally:
        handle.remove()
    expected, valid = golden["logits_data_positions"], golden["latent_last_steps"] >= 0  # [B, N, V], [B, N]
    for b, t in enumerate(lengths(golden)):
        assert max_diff(seen[0][b, -t:], golden["act/embed"][b, :t]) == 0.0
        # left padding keeps the valid latents at the right end, as right padding keeps them after the invalid ones
        assert max_diff(logits[b][valid[b]], expected[b][valid[b]]) < ATOL, b
    assert torch.isfinite(logits).all()  # padding latents (row 2's first three) are meaningless but finite


def test_unpadded_rows_match_official_logits(model, golden):
    expected, valid = golden["logits_data_positions"], golden["latent_last_steps"] >= 0
    for b, t in enumerate(lengths(golden)):
        with torch.no_grad():
            logits = model(golden["inputs"][b : b + 1, :t].long()).logits[0]  # [min(N, t), V]
        assert logits.shape[0] == min(CONFIG.num_latents, t)
        assert max_diff(logits, expected[b][valid[b]]) < ATOL, b


def run_official_layout(model: CausalLanguageModel, golden: dict[str, torch.Tensor], positions: torch.Tensor):
    """Our blocks on the official layout: right padding, latent j on input index ``s_j`` (-1: the last element),
    the official masks as -1e30 score biases. Returns the output of every stage, ``[B, N, D]`` ... ``[B, N, V]``."""
    ids = golden["inputs"].long()
    steps = golden["latent_last_steps"].long() % ids.shape[1]  # [B, N]: index -1 -> the last element, as official
    bias = lambda m: (1.0 - m) * -1e30  # noqa: E731  [B, 1, N, M]: masked scores -1e30, as official
    x = model.embedding(ids)  # [B, M, C]
    z = model.to_latents(torch.gather(x, 1, steps[..., None].expand(-1, -1, x.shape[-1])))  # [B, N, D]
    latent_positions = torch.gather(positions, 1, steps)  # [B, N]
    kv = model.cross_attention.keys_values(x, model.cross_attention.rotation(positions))
    latent_rotation = model.cross_attention.rotation(latent_positions)
    stages = {"act/cross_attention": model.cross_attention(z, latent_rotation, kv, bias(golden["encoder_mask"]))}
    z = stages["act/cross_attention"]
    for i, layer in enumerate(model.self_attention):
        z, _ = layer(z, layer.rotation(latent_positions), None, bias(golden["processor_mask"]))
        stages["act/self_attention" + (f"_{i}" if i else "")] = z
    stages["logits"] = model.logits(z)
    return stages


def test_every_stage_matches_official_activations_with_terminal_positions(model, golden):
    with torch.no_grad():
        stages = run_official_layout(model, golden, golden["positions_terminal"].long())
    diffs = {
        name: max_diff(out, golden[name if name != "logits" else "logits_terminal"]) for name, out in stages.items()
    }
    assert all(d < ATOL for d in diffs.values()), diffs  # all latents, the invalid ones included


def test_official_layout_with_data_positions_matches_on_all_latents(model, golden):
    """Also: the model's own forward (hooks on its blocks) equals this pipeline at every stage on valid latents."""
    with torch.no_grad():
        stages = run_official_layout(model, golden, golden["input_idxs"][..., 0].long())
    assert max_diff(stages["logits"], golden["logits_data_positions"]) < ATOL
    blocks = {"act/cross_attention": model.cross_attention}
    blocks.update({"act/self_attention" + (f"_{i}" if i else ""): b for i, b in enumerate(model.self_attention)})
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        block.register_forward_hook(lambda module, args, out, name=name: seen.update({name: out}))
        for name, block in blocks.items()
    ]
    try:
        with torch.no_grad():
            model(*left_padded(golden))
    finally:
        for hook in hooks:
            hook.remove()
    valid = golden["latent_last_steps"] >= 0
    for name, out in seen.items():
        z = out[0] if isinstance(out, tuple) else out  # a self-attention block also returns its keys/values
        assert max_diff(z[valid], stages[name][valid]) < ATOL, name
    assert len(seen) == 3


def test_valid_latents_ignore_padding_and_positions_shift(model, golden):
    """Padding ids do not reach valid latents; a shorter window (other absolute positions) changes nothing."""
    ids, mask = left_padded(golden)
    noisy = torch.where(mask, ids, torch.randint(1, 262, ids.shape, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        a, b = model(ids, attention_mask=mask).logits, model(noisy, attention_mask=mask).logits
        shorter = model(ids[1:, -20:], attention_mask=mask[1:, -20:]).logits
    valid = golden["latent_last_steps"] >= 0
    assert max_diff(a[valid], b[valid]) == 0.0
    assert max_diff(shorter[valid[1:]], a[1:][valid[1:]]) < ATOL
