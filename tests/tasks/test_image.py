"""Image classification: golden outputs of DeepMind's code (cases c1–c3), equivalence with transformers' three image
heads, parameter counts of the ImageNet presets, other image sizes, and input validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import GOLDEN, assert_close_rel

from perceiverio.adapters.image import ImageAdapterConfig
from perceiverio.tasks.image import ImageClassifier, ImageClassifierConfig
from perceiverio.weights import read_haiku, to_haiku

# ------------------------------------------------------------------------------------------------ golden (Haiku)
CASES = ("c1_image_pixels_fourier", "c2_image_conv1x1_learned_pos", "c3_image_conv_maxpool_fourier")


def _official_config(meta) -> ImageClassifierConfig:
    m = meta["modules"]
    return ImageClassifierConfig.from_official(
        m["input_preprocessor"]["kwargs"],
        m["encoder"]["kwargs"],
        m["decoder"]["kwargs"],
        num_classes=m["decoder"]["kwargs"]["num_classes"],
        image_shape=tuple(meta["input_shapes"]["input/images"][1:3]),
    )


@pytest.fixture(params=CASES)
def golden_case(request, golden):
    arrays, meta = golden(request.param)
    model = ImageClassifier.from_haiku(GOLDEN / f"{request.param}.npz", _official_config(meta))
    images = torch.from_numpy(arrays["input/images"]).permute(0, 3, 1, 2)  # official NHWC -> our NCHW
    return request.param, model, images, arrays


def test_golden_logits(golden_case):
    case, model, images, arrays = golden_case
    with torch.no_grad():
        logits = model(images).logits
    err = (logits - torch.from_numpy(arrays["output/logits"])).abs().max().item()
    print(f"{case}: max |diff| = {err:.2e} (max |logit| {np.abs(arrays['output/logits']).max():.2f})")
    assert_close_rel(logits, arrays["output/logits"])


def test_golden_intermediates(golden_case):
    _, model, images, arrays = golden_case
    with torch.no_grad():
        tokens, feats = model.input_adapter(images, return_features=True)
        # Fourier features at high frequencies move by ~1e-5 with 1-ulp position differences (README note 7)
        np.testing.assert_allclose(
            tokens.numpy(), arrays["intermediate/image_preprocessor/__call__/0/0"], rtol=0, atol=1e-4
        )
        assert_close_rel(feats, arrays["intermediate/image_preprocessor/__call__/0/2"])
        stem = "intermediate/image_preprocessor/~/conv2_d_downsample/__call__/0"
        if stem in arrays:  # conv 7×7/2 SAME -> BatchNorm (EMA statistics) -> ReLU -> max-pool SAME, NHWC
            assert_close_rel(model.input_adapter.conv(images).permute(0, 2, 3, 1), arrays[stem])
        assert_close_rel(model.encode(images), arrays["intermediate/perceiver_encoder/__call__/0"])
        assert_close_rel(
            model.output_queries(torch.zeros(2, 1, 1)), arrays["intermediate/classification_decoder/decoder_query/0"]
        )


@pytest.mark.parametrize("case", CASES)
def test_golden_inferred_sizes(case, golden):
    """Without config, every size visible in the arrays is read from them (heads etc. come from the preset)."""
    _, meta = golden(case)
    official = _official_config(meta)
    inferred = ImageClassifier.from_haiku(GOLDEN / f"{case}.npz").config
    a, b = inferred.adapter, official.adapter
    assert (a.prep_type, a.num_channels, a.position_encoding, a.project_pos_dim) == (
        b.prep_type,
        b.num_channels,
        b.position_encoding,
        b.project_pos_dim,
    )
    if a.position_encoding == "trainable":
        assert (a.num_pos_channels, a.image_shape) == (b.num_pos_channels, b.image_shape)
    else:
        assert a.num_bands == b.num_bands
    assert inferred.num_classes == 10
    assert (inferred.encoder.num_latents, inferred.encoder.num_latent_channels) == (16, 32)
    assert inferred.decoder.use_query_residual == official.decoder.use_query_residual  # from the matching preset


def test_golden_c3_batchnorm_state(golden):
    case = "c3_image_conv_maxpool_fourier"
    arrays, meta = golden(case)
    model = ImageClassifier.from_haiku(GOLDEN / f"{case}.npz", _official_config(meta))
    bn = model.input_adapter.conv.batchnorm
    ema = "state/image_preprocessor/~/conv2_d_downsample/~/batchnorm/~"
    np.testing.assert_array_equal(bn.running_mean.numpy(), arrays[f"{ema}/mean_ema/average"].reshape(-1))
    np.testing.assert_array_equal(bn.running_var.numpy(), arrays[f"{ema}/var_ema/average"].reshape(-1))
    assert int(bn.num_batches_tracked) == int(arrays[f"{ema}/mean_ema/counter"])

    state = to_haiku(model)["state"]  # the EMA averages and counter (all that inference needs), not `hidden`
    bn_ema = ema[len("state/") :]
    assert {m: sorted(p) for m, p in state.items()} == {
        f"{bn_ema}/mean_ema": ["average", "counter"],
        f"{bn_ema}/var_ema": ["average"],
    }


def test_golden_to_haiku_roundtrip(golden_case):
    """``to_haiku`` gives back the official arrays (Conv ``w`` HWIO, BatchNorm ``[1, 1, 1, C]``, state apart)."""
    _, model, images, arrays = golden_case
    exported = to_haiku(model)
    trees = (exported, {}) if "params" not in exported else (exported["params"], exported["state"])
    for tree, prefix in zip(trees, ("params", "state")):
        for module, params in tree.items():
            for name, value in params.items():
                np.testing.assert_array_equal(value, arrays[f"{prefix}/{module}/{name}"])
    assert sum(len(p) for p in trees[0].values()) == sum(k.startswith("params/") for k in arrays)
    reloaded = ImageClassifier.from_haiku(exported, model.config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images).logits, model(images).logits, rtol=0, atol=0)


def test_golden_missing_or_extra_state_is_an_error(golden):
    case = "c3_image_conv_maxpool_fourier"
    _, meta = golden(case)
    params, state = read_haiku(GOLDEN / f"{case}.npz")
    ema = "image_preprocessor/~/conv2_d_downsample/~/batchnorm/~"
    without = {k: v for k, v in state.items() if k != f"{ema}/var_ema/average"}
    with pytest.raises(ValueError, match=r"missing Haiku keys: state/.*var_ema/average"):
        ImageClassifier.from_haiku({"params": params, "state": without}, _official_config(meta))
    extra = {**state, "other/~/mean_ema/average": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected Haiku keys: state/other"):
        ImageClassifier.from_haiku({"params": params, "state": extra}, _official_config(meta))


# ---------------------------------------------------------------------------------------------- transformers
transformers = pytest.importorskip("transformers")

HF_HEADS = {
    "fourier": ("PerceiverForImageClassificationFourier", 16),
    "learned": ("PerceiverForImageClassificationLearned", 16),
    "conv": ("PerceiverForImageClassificationConvProcessing", 32),
}
HF_TINY = dict(
    num_latents=8,
    d_latents=32,
    num_blocks=2,
    num_self_attends_per_block=2,
    num_self_attention_heads=4,
    num_cross_attention_heads=1,
    image_size=16,
    num_labels=5,
)
TOL = 1e-5


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and BatchNorm statistic random and non-trivial (nothing left at its init value)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif name.endswith("weight") and ("layernorm" in name or "batchnorm" in name):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)
    return model.eval()


def _hf(head: str, **config) -> torch.nn.Module:
    cls = getattr(transformers, HF_HEADS[head][0])
    return _randomize(cls(transformers.PerceiverConfig(**{**HF_TINY, **config})))


def _compare(hf, ours, images, **hf_kwargs) -> float:
    with torch.no_grad():
        ref = hf(inputs=images, **hf_kwargs).logits
        out = ours(images).logits
    assert out.shape == ref.shape
    return (out - ref).abs().max().item()


@pytest.mark.parametrize("kind", ["model", "state_dict_hf_config", "folder"])
@pytest.mark.parametrize("head", list(HF_HEADS))
def test_logits_match_transformers(head, kind, tmp_path):
    hf = _hf(head)
    if kind == "model":
        ours = ImageClassifier.from_transformers(hf)
    elif kind == "state_dict_hf_config":
        ours = ImageClassifier.from_transformers(hf.state_dict(), hf.config)
    else:
        hf.save_pretrained(tmp_path)
        ours = ImageClassifier.from_transformers(tmp_path)
    assert (ours.config.activation, ours.config.masking) == ("gelu", "transformers")
    size = HF_HEADS[head][1]
    err = _compare(hf, ours, torch.randn(3, 3, size, size))
    print(f"{head}/{kind}: max |diff| = {err:.2e}")
    assert err <= TOL


@pytest.mark.parametrize("head", list(HF_HEADS))
def test_bare_state_dict_inferred(head):
    """Released head counts (1 cross, 8 self) and num_blocks=8 are assumed for a bare state dict."""
    hf = _hf(head, num_blocks=8, num_self_attention_heads=8, num_self_attends_per_block=1)
    ours = ImageClassifier.from_transformers(hf.state_dict())
    assert ours.config.encoder.num_blocks == 8
    size = HF_HEADS[head][1]
    assert _compare(hf, ours, torch.randn(2, 3, size, size)) <= TOL


def test_transformers_deviations_are_reproduced():
    """transformers' conv stem (symmetric conv padding, unpadded pool: 32 -> 16 -> 7) and its learned model's
    decoder query residual are in the converted config; official padding gives another grid and other logits."""
    hf = _hf("conv")
    ours = ImageClassifier.from_transformers(hf)
    a = ours.config.adapter
    assert (a.unpadded_pool, a.symmetric_conv_padding, a.max_resolution, a.num_bands) == (True, True, (56, 56), 64)
    x = torch.randn(2, 3, 32, 32)
    assert ours.input_adapter(x).shape == (2, 7 * 7, 64 + 258)
    official = ImageClassifier.from_transformers(
        hf, adapter=dataclasses.replace(a, unpadded_pool=False, symmetric_conv_padding=False)
    )
    assert official.input_adapter(x).shape == (2, 8 * 8, 64 + 258)
    assert _compare(hf, official, x) > 1e-3
    learned = ImageClassifier.from_transformers(_hf("learned"))
    assert learned.config.decoder.use_query_residual  # official learned model: no query residual
    assert not ImageClassifierConfig.imagenet_learned().decoder.use_query_residual


def test_learned_interpolation_matches_transformers():
    hf = _hf("learned")
    ours = ImageClassifier.from_transformers(hf)
    x = torch.randn(2, 3, 24, 20)  # another (non-square) size: the 16×16 table is resampled bicubically
    assert _compare(hf, ours, x, interpolate_pos_encoding=True) <= TOL


def test_wrong_checkpoints_are_clear_errors():
    mlm = transformers.PerceiverForMaskedLM(transformers.PerceiverConfig(**HF_TINY, d_model=16))
    with pytest.raises(ValueError, match=r"PerceiverForImageClassification.*final_layer"):
        ImageClassifier.from_transformers(mlm)
    state = _hf("conv").state_dict()
    del state["perceiver.input_preprocessor.convnet.batchnorm.running_var"]
    with pytest.raises(ValueError, match=r"missing keys.*batchnorm\.running_var"):
        ImageClassifier.from_transformers(state)
    with pytest.raises(ValueError, match="cannot tell which transformers image head"):
        from perceiverio.weights.image import load_named_head as load_from_transformers

        load_from_transformers(ImageClassifier, _hf("fourier"))  # the generic loader alone cannot tell the head


# ------------------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(
    "preset, hf_head, expected",
    [
        ("imagenet_fourier", "fourier", 48_440_627),
        ("imagenet_learned", "learned", 62_255_848),
        ("imagenet_conv", "conv", 48_646_522),
    ],
)
def test_preset_parameter_counts_equal_transformers(preset, hf_head, expected):
    hf_config = transformers.PerceiverConfig(
        d_latents=1024,
        num_latents=512,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        image_size=224,
        num_labels=1000,
    )
    with torch.device("meta"):
        ours = ImageClassifier(getattr(ImageClassifierConfig, preset)())
        hf = getattr(transformers, HF_HEADS[hf_head][0])(hf_config)
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters()) == expected


def test_preset_input_widths():
    with torch.device("meta"):
        widths = {
            p: ImageClassifier(getattr(ImageClassifierConfig, p)()).input_adapter.num_input_channels
            for p in ("imagenet_fourier", "imagenet_learned", "imagenet_conv")
        }
    assert widths == {"imagenet_fourier": 261, "imagenet_learned": 512, "imagenet_conv": 322}


# ---------------------------------------------------------------------------------------- sizes and training
def _learned_tiny() -> ImageClassifier:
    adapter = ImageAdapterConfig(
        image_shape=(16, 16),
        prep_type="conv1x1",
        num_channels=8,
        position_encoding="trainable",
        num_pos_channels=8,
        project_pos_dim=4,
    )
    return ImageClassifier(ImageClassifierConfig.tiny(adapter=adapter)).eval()


def test_fourier_model_accepts_other_sizes():
    model = ImageClassifier(ImageClassifierConfig.tiny()).eval()
    with torch.no_grad():
        for h, w in ((32, 32), (40, 24), (7, 9)):
            x = torch.randn(2, 3, h, w)
            assert model.input_adapter(x).shape == (2, h * w, 21)
            assert model(x).logits.shape == (2, 10)
    conv = ImageClassifier(
        ImageClassifierConfig.tiny(
            adapter=ImageAdapterConfig(
                image_shape=(32, 32), prep_type="conv", spatial_downsample=4, num_channels=8, num_bands=4
            )
        )
    ).eval()
    with torch.no_grad():
        assert conv.input_adapter(torch.randn(1, 3, 33, 50)).shape == (1, 9 * 13, 8 + 18)  # SAME: ceil(ceil(n/2)/2)


def test_learned_positions_interpolate():
    model = _learned_tiny()
    pos = model.input_adapter.position
    torch.testing.assert_close(pos.interpolate((16, 16)), pos.embeddings, rtol=0, atol=1e-6)  # same size: identity
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = model.input_adapter(x)
        expected = pos.projection(pos.embeddings).expand(2, -1, -1)
        torch.testing.assert_close(tokens[..., 8:], expected)
        big = model.input_adapter(torch.randn(2, 3, 24, 20))
        assert big.shape == (2, 24 * 20, 12)
        assert model(torch.randn(2, 3, 24, 20)).logits.shape == (2, 10)


def test_loss_and_backward():
    torch.manual_seed(0)
    model = ImageClassifier(ImageClassifierConfig.tiny(label_smoothing=0.1))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([1, 0, -100, 9])
    out = model(x, y)
    keep = y != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], y[keep], label_smoothing=0.1))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    soft = torch.softmax(torch.randn(4, 10), -1)  # MixUp / CutMix targets
    torch.testing.assert_close(model(x, soft).loss, F.cross_entropy(model(x).logits, soft, label_smoothing=0.1))
    assert model(x, torch.full((4,), -100)).loss.item() == 0.0


def test_conv_stem_batchnorm_trains():
    model = ImageClassifier(
        ImageClassifierConfig.tiny(
            adapter=ImageAdapterConfig(
                image_shape=(32, 32), prep_type="conv", spatial_downsample=4, num_channels=8, num_bands=4
            )
        )
    )
    bn = model.input_adapter.conv.batchnorm
    before = bn.running_mean.clone()
    model.train()(torch.randn(2, 3, 32, 32), torch.tensor([0, 1])).loss.backward()
    assert not torch.equal(before, bn.running_mean)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "images, match",
    [
        (torch.randn(3, 32, 32), "shape"),  # rank 3 (no batch)
        (torch.randn(2, 32, 32, 3), "channels first"),  # channels last
        (torch.randint(0, 255, (2, 3, 32, 32)), "floating-point"),
        (torch.randn(0, 3, 32, 32), "non-empty batch"),
        (torch.randn(2, 3, 0, 32), "non-empty"),
        ([[0.0]], "tensor"),
    ],
)
def test_bad_images_raise(images, match):
    model = ImageClassifier(ImageClassifierConfig.tiny())
    with pytest.raises(ValueError, match=match):
        model(images)


def test_too_small_for_unpadded_pool():
    adapter = ImageAdapterConfig(
        image_shape=(32, 32), prep_type="conv", spatial_downsample=4, num_channels=8, num_bands=4, unpadded_pool=True
    )
    model = ImageClassifier(ImageClassifierConfig.tiny(adapter=adapter))
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize(
    "labels, match",
    [
        (torch.tensor([0, 10]), r"lie in \[0, 10\)"),
        (torch.tensor([0, 1, 2]), "shape"),
        (torch.tensor([True, False]), "integer class ids"),
        (torch.rand(2, 3), "soft labels"),
    ],
)
def test_bad_labels_raise(labels, match):
    model = ImageClassifier(ImageClassifierConfig.tiny())
    with pytest.raises(ValueError, match=match):
        model(torch.randn(2, 3, 32, 32), labels)


def test_config_validation():
    with pytest.raises(ValueError, match="for images"):
        ImageClassifierConfig.tiny(adapter=ImageAdapterConfig(image_shape=(2, 32, 32), prep_type="patches"))
    with pytest.raises(ValueError, match="num_output_channels"):
        ImageClassifierConfig.tiny(
            decoder=dataclasses.replace(ImageClassifierConfig.tiny().decoder, num_output_channels=3)
        )
    with pytest.raises(ValueError, match="label_smoothing"):
        ImageClassifierConfig.tiny(label_smoothing=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        ImageClassifierConfig.tiny(num_classes=0)
