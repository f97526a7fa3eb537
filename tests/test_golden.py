"""Our models and functions against outputs of DeepMind's official JAX/Haiku code (``../shared/golden``).

Weights come in through ``from_haiku``; every output must match to 1e-5 of its largest magnitude. Intermediate
checks (encoder latents, decoder queries, decoder output) localise a failure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GOLDEN, assert_close_rel

from perceiverio import ByteTokenizer, MaskedLanguageModel
from perceiverio.core import (
    DecoderConfig,
    EncoderConfig,
    FourierPositionEncoding,
    PerceiverIO,
    PerceiverIOConfig,
    fourier_features,
    linear_positions,
    positions_from_indices,
)
from perceiverio.weights import to_haiku

# ------------------------------------------------------------------------------------------ a: generic Perceiver IO
CASE_A = "a_encoder_basic_decoder_masked"
CONFIG_A = PerceiverIOConfig(  # the exact kwargs of the JSON sidecar
    num_input_channels=12,
    num_output_queries=7,
    encoder=EncoderConfig(
        num_latents=16,
        num_latent_channels=32,
        num_cross_attention_heads=2,
        num_self_attention_heads=4,
        num_self_attends_per_block=2,
        num_blocks=2,
        qk_channels=16,
        v_channels=32,
        cross_attention_widening_factor=2,
        self_attention_widening_factor=2,
        use_query_residual=True,
    ),
    decoder=DecoderConfig(
        num_query_channels=24,
        num_output_channels=5,
        num_heads=2,
        qk_channels=16,
        v_channels=12,
        use_query_residual=False,
    ),
)


@pytest.fixture
def case_a(golden):
    arrays, meta = golden(CASE_A)
    kw = meta["modules"]["encoder"]["kwargs"]
    assert (kw["num_blocks"], kw["num_self_attends_per_block"], kw["z_index_dim"]) == (2, 2, 16)
    model = PerceiverIO.from_haiku(GOLDEN / f"{CASE_A}.npz", CONFIG_A)
    return model, arrays


@pytest.mark.parametrize(
    "mask_key, output_key",
    [
        ("input/input_mask", "output/output"),
        ("input/input_mask_fully_padded_example", "output/output_fully_padded_example"),
    ],
)
def test_a_perceiver_io_outputs(case_a, mask_key, output_key):
    model, arrays = case_a
    x = torch.from_numpy(arrays["input/inputs"])
    mask = torch.from_numpy(arrays[mask_key])
    with torch.no_grad():
        out = model(x, mask)  # the official model receives no query mask here
    assert_close_rel(out, arrays[output_key])


def test_a_perceiver_io_intermediates(case_a):
    model, arrays = case_a
    x = torch.from_numpy(arrays["input/inputs"])
    mask = torch.from_numpy(arrays["input/input_mask"]).bool()
    with torch.no_grad():
        z0 = model.encoder.latents.expand(2, -1, -1)
        assert_close_rel(z0, arrays["intermediate/perceiver_encoder/latents/0"])
        z = model.encoder.cross_attention(z0, x, key_mask=mask)
        assert_close_rel(z, arrays["intermediate/perceiver_encoder/~/cross_attention/__call__/0"])
        sa0, sa1 = model.encoder.self_attention
        for k in range(2):  # two passes over the shared weights
            z = sa0(z)
            assert_close_rel(z, arrays[f"intermediate/perceiver_encoder/~/self_attention/__call__/{k}"])
            z = sa1(z)
            assert_close_rel(z, arrays[f"intermediate/perceiver_encoder/~/self_attention_1/__call__/{k}"])
        assert_close_rel(model.encode(x, mask), arrays["intermediate/perceiver_encoder/__call__/0"])
        q = model.output_queries(torch.zeros(2, 1, 1))
        assert_close_rel(q, arrays["intermediate/basic_decoder/decoder_query/0"])
        h = model.decoder.cross_attention(q, z)
        assert_close_rel(h, arrays["intermediate/basic_decoder/cross_attention/__call__/0"])


def test_a_fully_padded_example_is_wiped_not_uniform(case_a):
    """Example 1 has no valid input: its latents after the read are latents + (linear_3.b, then MLP), identical to
    what any other fully padded input gives."""
    model, arrays = case_a
    x = torch.from_numpy(arrays["input/inputs"])
    mask = torch.from_numpy(arrays["input/input_mask_fully_padded_example"])
    with torch.no_grad():
        a = model(x, mask)[1]
        b = model(torch.randn_like(x), mask)[1]
    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------------ b: byte MLM
CASE_B = "b_language_mlm"


@pytest.fixture
def case_b(golden):
    arrays, meta = golden(CASE_B)
    model = MaskedLanguageModel.from_haiku(GOLDEN / f"{CASE_B}.npz")  # config inferred, released head counts
    return model, arrays, meta


def test_b_inferred_config(case_b):
    model, _, meta = case_b
    enc, dec = meta["modules"]["encoder"]["kwargs"], meta["modules"]["decoder"]["kwargs"]
    cfg = model.config
    assert (cfg.vocab_size, cfg.max_seq_len, cfg.num_input_channels) == (262, 64, 32)
    e = cfg.encoder
    assert (e.num_latents, e.num_latent_channels, e.num_self_attends_per_block, e.num_blocks) == (
        enc["z_index_dim"],
        enc["num_z_channels"],
        enc["num_self_attends_per_block"],
        enc["num_blocks"],
    )
    assert (e.num_cross_attention_heads, e.num_self_attention_heads) == (
        enc["num_cross_attend_heads"],
        enc["num_self_attend_heads"],
    )
    assert (e.qk_channels, e.v_channels) == (enc["qk_channels"], enc["v_channels"])
    d = cfg.decoder
    assert (d.num_heads, d.qk_channels, d.v_channels, d.num_output_channels, d.use_query_residual) == (
        dec["num_heads"],
        dec["qk_channels"],
        dec["v_channels"],
        None,
        dec["use_query_residual"],
    )


def test_b_language_mlm_logits(case_b):
    model, arrays, _ = case_b
    ids = torch.from_numpy(arrays["input/token_ids"])
    mask = torch.from_numpy(arrays["input/input_mask"])
    assert not bool(mask.all())  # padded positions are decoded with query_mask = input mask
    with torch.no_grad():
        logits = model(ids, mask).logits
    assert_close_rel(logits, arrays["output/logits"])


def test_b_language_mlm_intermediates(case_b):
    model, arrays, _ = case_b
    ids = torch.from_numpy(arrays["input/token_ids"])
    mask = torch.from_numpy(arrays["input/input_mask"]).bool()
    with torch.no_grad():
        z = model.encode(ids, mask)
        assert_close_rel(z, arrays["intermediate/perceiver_encoder/__call__/0"])
        q = model.output_queries(torch.zeros(2, 1, 1))
        assert_close_rel(q, arrays["intermediate/basic_decoder/decoder_query/0"])
        h = model.decoder(q, z, mask)
        assert_close_rel(h, arrays["intermediate/perceiver/__call__/0"])


def test_b_to_haiku_roundtrip(case_b):
    model, arrays, _ = case_b
    exported = to_haiku(model)
    for module, params in exported.items():
        for name, value in params.items():
            np.testing.assert_array_equal(value, arrays[f"params/{module}/{name}"])
    assert sum(len(p) for p in exported.values()) == sum(k.startswith("params/") for k in arrays)


# ---------------------------------------------------------------------------------------- f: Fourier features
CASE_F = "f_fourier_features"


@pytest.fixture
def case_f(golden):
    return golden(CASE_F)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def test_f_generate_fourier_features(case_f):
    arrays, meta = case_f
    calls = {k: c for k, c in meta["calls"].items() if c["fn"] == "generate_fourier_features"}
    assert len(calls) == 9
    for key, call in calls.items():
        pos = _t(arrays[call["pos"]])  # the saved float32 positions (see the README's float32 note)
        res = call["max_resolution"]
        res = (224, 224) if isinstance(res, str) else tuple(res)  # "default (224, 224)"
        feats = fourier_features(pos, call["num_bands"], res, call["concat_pos"], call["sine_only"])
        assert_close_rel(feats, arrays[key])


def test_f_grid_positions(case_f):
    arrays, _ = case_f
    grid = linear_positions((5, 7))
    np.testing.assert_allclose(grid.numpy(), arrays["input/grid2d_5x7/linear_positions"], rtol=0, atol=1e-6)
    for key, dims in (
        ("input/grid2d_5x7/pos", (5, 7)),
        ("input/grid1d_10/pos", (10,)),
        ("input/grid3d_2x3x4/pos", (2, 3, 4)),
    ):
        pos = linear_positions(dims).reshape(-1, len(dims))  # flattened row-major
        np.testing.assert_allclose(pos.numpy(), arrays[key], rtol=0, atol=1e-6)


def test_f_subsampled_positions(case_f):
    arrays, _ = case_f
    idx = _t(arrays["input/subsampled/indices"]).long()
    unravelled = torch.stack(torch.unravel_index(idx, (5, 7)), dim=-1)
    np.testing.assert_array_equal(unravelled.numpy(), arrays["input/subsampled/unraveled"])
    pos = positions_from_indices(idx, (5, 7))
    np.testing.assert_allclose(pos.numpy(), arrays["input/subsampled/pos"], rtol=0, atol=1e-6)
    grid = linear_positions((5, 7)).reshape(-1, 2)
    assert not torch.allclose(pos[1:], grid[idx[1:]])  # not the linspace grid


def test_f_fourier_position_encoding_module(case_f):
    arrays, meta = case_f
    kw = meta["calls"]["output/module/FourierPositionEncoding_5x7_batch2"]["kw"]
    enc = FourierPositionEncoding(
        (5, 7),
        num_bands=kw["num_bands"],
        max_resolution=kw["max_resolution"],
        concat_pos=kw["concat_pos"],
        sine_only=kw["sine_only"],
    )
    expected = arrays["output/module/FourierPositionEncoding_5x7_batch2"]
    assert_close_rel(enc(2, positions=_t(arrays["input/grid2d_5x7/pos"])), expected)
    assert_close_rel(enc(2), expected)  # our own grid: low frequencies, so the 1-ulp position noise is harmless


def test_f_decoder_queries(case_f):
    """``BasicDecoder.decoder_query`` with Fourier queries: the full grid, and flat subsampled indices."""
    arrays, meta = case_f
    fk = meta["calls"]["output/module/BasicDecoder_decoder_query_full"]["kw"]["fourier_position_encoding_kwargs"]
    enc = FourierPositionEncoding(
        (5, 7), num_bands=fk["num_bands"], concat_pos=fk["concat_pos"], sine_only=fk["sine_only"]
    )
    assert_close_rel(enc(2), arrays["output/module/BasicDecoder_decoder_query_full"])
    expected = arrays["output/module/BasicDecoder_decoder_query_subsampled"]
    assert_close_rel(enc(2, positions=_t(arrays["input/subsampled/pos"])), expected)
    idx = _t(arrays["input/subsampled/indices"]).long()
    assert_close_rel(enc(2, positions=positions_from_indices(idx, (5, 7))), expected)


# ------------------------------------------------------------------------------------------- g: byte tokenizer
def test_g_bytes_tokenizer(golden):
    arrays, meta = golden("g_bytes_tokenizer")
    tok = ByteTokenizer()
    assert tok.vocab_size == meta["vocab_size"] == 262
    for case in meta["strings"]:
        i = case["index"]
        ids = tok.encode(case["string"])
        assert ids == case["ids"] == arrays[f"output/ids_{i}"].tolist()
        decoded = tok.decode(ids)
        assert decoded == case["decoded"]
        assert decoded.encode("utf-8") == arrays[f"output/decoded_utf8_{i}"].tobytes()
    special = arrays["input/special_ids"].tolist()
    assert special == meta["special"]["ids"]
    assert tok.decode(special) == meta["special"]["decoded"]
    assert tok.decode(special).encode("utf-8") == arrays["output/special_decoded_utf8"].tobytes()
    invalid = arrays["input/invalid_utf8_ids"].tolist()
    assert invalid == [b + 6 for b in meta["invalid_utf8"]["bytes_in"]]
    assert tok.decode(invalid) == meta["invalid_utf8"]["decoded"] == "\ufffdx"
    assert tok.decode(invalid).encode("utf-8") == arrays["output/invalid_utf8_decoded_utf8"].tobytes()
    assert tok.decode(torch.tensor(invalid)) == "\ufffdx"
