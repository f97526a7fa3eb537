"""Optical flow: golden outputs of DeepMind's code, transformers equivalence, parameter count, tiling maths,
chunked decoding and input validation."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from conftest import GOLDEN, assert_close_rel

from perceiverio.adapters.image import extract_patches_3x3
from perceiverio.core import DecoderConfig, EncoderConfig
from perceiverio.tasks.flow import (
    OpticalFlow,
    OpticalFlowConfig,
    blend_tiles,
    blend_weights,
    tile_origins,
    tile_starts,
    tile_weights,
)
from perceiverio.weights import to_haiku

CASE = "d_optical_flow"
GOLDEN_CONFIG = OpticalFlowConfig(  # the JSON sidecar's kwargs
    train_size=(12, 16),
    num_patch_channels=16,
    num_bands=3,
    encoder=EncoderConfig(
        num_latents=16,
        num_latent_channels=32,
        num_cross_attention_heads=1,
        num_self_attention_heads=4,
        num_self_attends_per_block=2,
        num_blocks=1,
    ),
    decoder=DecoderConfig(num_query_channels=30, num_output_channels=2, num_heads=1, use_query_residual=False),
)


def _frames(b: int = 1, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def tiny() -> OpticalFlow:
    torch.manual_seed(0)
    model = OpticalFlow(OpticalFlowConfig.tiny()).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a dropped term would show
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


# --------------------------------------------------------------------------------------------------------- golden
@pytest.fixture
def golden_flow(golden):
    arrays, meta = golden(CASE)
    kw = meta["modules"]
    assert kw["encoder"]["kwargs"]["num_self_attend_heads"] == 4
    assert kw["decoder"]["kwargs"]["rescale_factor"] == GOLDEN_CONFIG.rescale_factor
    assert tuple(kw["input_preprocessor"]["kwargs"]["fourier_position_encoding_kwargs"]["max_resolution"]) == (12, 16)
    model = OpticalFlow.from_haiku(GOLDEN / f"{CASE}.npz", GOLDEN_CONFIG)
    frames = torch.from_numpy(arrays["input/images"]).permute(0, 1, 4, 2, 3)  # [B, T, H, W, C] -> [B, T, C, H, W]
    return model, frames, arrays


def test_golden_patches_for_flow(golden_flow):
    _, frames, arrays = golden_flow
    patches = extract_patches_3x3(frames)  # [B, 2, H, W, 27]
    np.testing.assert_array_equal(patches.numpy(), arrays["input/patches_for_flow"])


@torch.no_grad()
def test_golden_flow(golden_flow):
    model, frames, arrays = golden_flow
    x = model.input_adapter(frames)
    np.testing.assert_allclose(x.numpy(), arrays["intermediate/image_preprocessor/__call__/0/0"], atol=1e-4)
    assert_close_rel(model.encoder(x), arrays["intermediate/perceiver_encoder/__call__/0"])
    flow = model(frames)  # pixels = raw output × output_scale; the golden output is raw, [B, H, W, 2]
    assert_close_rel(flow.permute(0, 2, 3, 1) / model.config.output_scale, arrays["output/flow"])
    raw = OpticalFlow.from_haiku(GOLDEN / f"{CASE}.npz", GOLDEN_CONFIG, output_scale=1.0)(frames)
    assert_close_rel(raw.permute(0, 2, 3, 1), arrays["output/flow"])


def test_golden_inferred_config_and_round_trip(golden_flow):
    model, frames, _ = golden_flow
    inferred = OpticalFlow.from_haiku(GOLDEN / f"{CASE}.npz", train_size=(12, 16)).config
    # sizes come from the arrays; head counts (invisible in shapes) are the released model's
    assert (inferred.num_patch_channels, inferred.num_bands, inferred.num_input_channels) == (16, 3, 30)
    assert (inferred.encoder.num_latents, inferred.encoder.num_latent_channels) == (16, 32)
    assert inferred.encoder.num_self_attends_per_block == 2 and inferred.encoder.num_self_attention_heads == 16
    again = OpticalFlow.from_haiku(to_haiku(model), GOLDEN_CONFIG)
    with torch.no_grad():
        assert torch.equal(again(frames), model(frames))


def test_haiku_pystate_file(tiny, tmp_path):
    """The released checkpoint is a pickle named ``optical_flow_checkpoint.pystate``."""
    path = tmp_path / "optical_flow_checkpoint.pystate"
    path.write_bytes(pickle.dumps(to_haiku(tiny)))
    loaded = OpticalFlow.from_haiku(path, train_size=tiny.config.train_size, min_overlap=4, encoder=tiny.config.encoder)
    assert loaded.config == dataclasses.replace(tiny.config, decoder=loaded.config.decoder, decoder_chunk_size=16384)
    frames = _frames()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames), tiny(frames), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------- transformers
def _hf_flow(**overrides):
    transformers = pytest.importorskip("transformers")
    config = transformers.PerceiverConfig(
        **{
            **dict(
                num_latents=8,
                d_latents=16,
                d_model=322,
                num_blocks=2,
                num_self_attends_per_block=2,
                num_self_attention_heads=2,
                num_cross_attention_heads=1,
                train_size=[6, 8],
            ),
            **overrides,
        }
    )
    hf = transformers.PerceiverForOpticalFlow(config)
    with torch.no_grad():  # every weight perturbed (transformers inits LayerNorms to 1/0, biases to 0)
        for name, p in hf.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
            elif "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    return hf.eval()


@pytest.mark.parametrize("source", ["model", "state_dict", "folder"])
@torch.no_grad()
def test_transformers_equivalence(source, tmp_path):
    hf = _hf_flow()
    if source == "model":
        ours = OpticalFlow.from_transformers(hf)
    elif source == "state_dict":
        ours = OpticalFlow.from_transformers(hf.state_dict(), config=hf.config)
    else:
        hf.save_pretrained(tmp_path)
        ours = OpticalFlow.from_transformers(tmp_path)
    assert ours.config.train_size == (6, 8) and ours.config.encoder.num_blocks == 2
    frames = _frames(3, 6, 8)
    ref = hf(inputs=extract_patches_3x3(frames).movedim(-1, 2)).logits  # [B, H, W, 2], before the demo's ×20
    assert_close_rel(ours(frames), (ref.permute(0, 3, 1, 2) * 20).numpy())
    raw = OpticalFlow.from_transformers(hf, output_scale=1.0)(frames)
    assert_close_rel(raw, ref.permute(0, 3, 1, 2).numpy())


@torch.no_grad()
def test_transformers_shape_q_decoder():
    hf = _hf_flow(cross_attention_shape_for_attention="q", hidden_act="gelu_new", num_blocks=1)
    ours = OpticalFlow.from_transformers(hf)
    assert ours.config.decoder.qk_channels == 322 and ours.config.activation == "gelu_tanh"
    frames = _frames(2, 6, 8)
    ref = hf(inputs=extract_patches_3x3(frames).movedim(-1, 2)).logits
    assert_close_rel(ours(frames), (ref.permute(0, 3, 1, 2) * 20).numpy())


def test_transformers_wrong_head_raises():
    transformers = pytest.importorskip("transformers")
    config = transformers.PerceiverConfig(
        num_latents=4,
        d_latents=8,
        d_model=8,
        num_self_attends_per_block=1,
        num_self_attention_heads=1,
        num_cross_attention_heads=1,
        vocab_size=10,
        max_position_embeddings=8,
    )
    with pytest.raises(ValueError, match="PerceiverForOpticalFlow"):
        OpticalFlow.from_transformers(transformers.PerceiverForMaskedLM(config))


def test_sintel_parameter_count_equals_transformers():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.PerceiverConfig(  # transformers' conversion script's flow config
        num_latents=2048,
        d_latents=512,
        d_model=322,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_self_attention_heads=16,
        num_cross_attention_heads=1,
        train_size=[368, 496],
    )
    with torch.device("meta"):
        hf = transformers.PerceiverForOpticalFlow(hf_config)
        ours = OpticalFlow(OpticalFlowConfig.sintel())
    n_hf = sum(p.numel() for p in hf.parameters())
    assert ours.num_parameters() == n_hf == 41_057_134
    assert all(p.is_meta for p in ours.parameters())  # built without allocating


# --------------------------------------------------------------------------------------------------------- tiling
def test_tile_starts_examples():
    assert tile_starts(436, 368, 20) == [0, 68]  # Sintel
    assert tile_starts(1024, 496, 20) == [0, 476, 528]
    assert tile_starts(368, 368, 20) == [0]
    assert tile_starts(700, 368, 20) == [0, 332]  # the official list [0, 348, 332] leaves the image
    with pytest.raises(ValueError):
        tile_starts(300, 368, 20)
    with pytest.raises(ValueError):
        tile_starts(400, 368, 368)


@pytest.mark.parametrize(
    "size, tile, overlap",
    [(436, 368, 20), (1024, 496, 20), (375, 368, 20), (1242, 496, 20), (100, 10, 0), (100, 10, 9), (57, 13, 5)],
)
def test_tile_starts_cover_with_overlap(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile and starts == sorted(set(starts))
    assert all(0 <= s <= size - tile for s in starts)
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap  # consecutive tiles overlap by at least min_overlap (and leave no gap)


def test_tile_weights_official_formula():
    w = tile_weights((5, 7))
    y, x = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    expected = np.minimum(np.minimum(x + 1, 7 - x), np.minimum(y + 1, 5 - y))
    np.testing.assert_array_equal(w.numpy(), expected)
    assert float(w.min()) == 1.0


def test_blend_weights_sum_to_one_on_larger_image():
    size, tile = (61, 83), (24, 32)
    origins = tile_origins(size, tile, 4)
    assert len(origins) == len(tile_starts(61, 24, 4)) * len(tile_starts(83, 32, 4))
    weights = blend_weights(size, tile, origins)  # [T, H, W]
    torch.testing.assert_close(weights.sum(0), torch.ones(size), rtol=0, atol=1e-6)
    assert bool((weights >= 0).all())


def test_blend_constant_field_is_constant():
    size, tile = (50, 70), (24, 32)
    pieces = [(y, x, torch.full((2, 2, *tile), 3.25)) for y, x in tile_origins(size, tile, 5)]
    out = blend_tiles(pieces, size)
    torch.testing.assert_close(out, torch.full((2, 2, *size), 3.25))


def test_blend_tiles_rejects_gaps_and_outside():
    with pytest.raises(ValueError, match="cover"):
        blend_tiles([(0, 0, torch.ones(1, 4, 4))], (4, 8))
    with pytest.raises(ValueError, match="outside"):
        blend_tiles([(2, 0, torch.ones(1, 4, 4))], (4, 4))


@torch.no_grad()
def test_predict_tile_sized_image_equals_forward(tiny):
    frames = _frames(2, 24, 32)
    torch.testing.assert_close(tiny.predict(frames), tiny(frames))  # up to rounding of (w·flow) / w


@torch.no_grad()
def test_predict_larger_image(tiny):
    frames = _frames(1, 40, 70, seed=3)
    origins = tile_origins((40, 70), (24, 32), 4)
    assert origins == [(0, 0), (0, 28), (0, 38), (16, 0), (16, 28), (16, 38)]
    flow = tiny.predict(frames, progress=True)
    assert flow.shape == (1, 2, 40, 70) and bool(torch.isfinite(flow).all())
    # the top-left and bottom-right corners are covered by one tile only
    torch.testing.assert_close(flow[..., :4, :4], tiny(frames[..., :24, :32])[..., :4, :4])
    torch.testing.assert_close(flow[..., -4:, -4:], tiny(frames[..., -24:, -32:])[..., -4:, -4:])
    # against an explicit blend of every tile
    pieces = [(y, x, tiny(frames[..., y : y + 24, x : x + 32])) for y, x in origins]
    torch.testing.assert_close(flow, blend_tiles(pieces, (40, 70)))


def test_predict_rejects_small_image_and_bad_overlap(tiny):
    with pytest.raises(ValueError, match="smaller than the tile"):
        tiny.predict(_frames(1, 20, 40))
    with pytest.raises(ValueError, match="min_overlap"):
        tiny.predict(_frames(1, 24, 32), min_overlap=24)


# --------------------------------------------------------------------------------------------- model behaviour
@torch.no_grad()
def test_chunked_decoding_equals_unchunked(tiny):
    frames = _frames(2, 24, 32, seed=1)
    full = tiny(frames, chunk_size=None)
    model_all = OpticalFlow(dataclasses.replace(tiny.config, decoder_chunk_size=None))
    model_all.load_state_dict(tiny.state_dict())
    torch.testing.assert_close(model_all.eval()(frames), full, rtol=0, atol=0)
    for chunk in (1000, 100, 7):
        torch.testing.assert_close(tiny(frames, chunk_size=chunk), full, rtol=1e-5, atol=1e-6)


def test_any_size_and_gradients(tiny):
    frames = _frames(1, 9, 13, seed=2).requires_grad_()
    flow = tiny(frames)
    assert flow.shape == (1, 2, 9, 13)
    flow.square().sum().backward()
    assert frames.grad is not None and tiny.input_adapter.patches_linear.weight.grad is not None
    tiny.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    "frames, match",
    [
        (torch.zeros(2, 3, 24, 32), "rank"),
        (torch.zeros(1, 3, 3, 24, 32), "2 frames"),
        (torch.zeros(1, 2, 4, 24, 32), "3 colour channels"),
        (torch.zeros(1, 2, 24, 32, 3), "3 colour channels"),
        (torch.zeros(1, 2, 3, 24, 32, dtype=torch.uint8), "floating-point"),
        (torch.zeros(0, 2, 3, 24, 32), "non-empty"),
        (np.zeros((1, 2, 3, 24, 32), dtype=np.float32), "ndarray"),
    ],
)
def test_bad_inputs_raise(tiny, frames, match):
    with pytest.raises(ValueError, match=match):
        tiny(frames)
    with pytest.raises(ValueError, match=match):
        tiny.predict(frames)


def test_config_validation():
    with pytest.raises(ValueError, match="num_query_channels"):
        OpticalFlowConfig.tiny(num_bands=5)
    with pytest.raises(ValueError, match="num_output_channels"):
        OpticalFlowConfig.tiny(decoder=DecoderConfig(num_query_channels=34, num_output_channels=3))
    with pytest.raises(ValueError, match="train_size"):
        OpticalFlowConfig.tiny(train_size=(24,))
    with pytest.raises(ValueError, match="decoder_chunk_size"):
        OpticalFlowConfig.tiny(decoder_chunk_size=0)
    assert OpticalFlowConfig.sintel().num_input_channels == 322
    assert OpticalFlowConfig.sintel().tile == (368, 496)
    zero = OpticalFlow(OpticalFlowConfig.tiny(zero_init_output=True))
    assert not bool(zero.decoder.projection.weight.any())
