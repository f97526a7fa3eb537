"""Multimodal autoencoder: golden case e (official code), transformers equivalence, Kinetics size, chunked and
subsampled decoding, modality naming and order, masking, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import assert_close_rel

from perceiverio.adapters.audio import AudioAdapterConfig, AudioInputAdapter
from perceiverio.adapters.image import ImageAdapterConfig
from perceiverio.adapters.label import LabelAdapterConfig
from perceiverio.adapters.multimodal import MultimodalInputAdapter
from perceiverio.core.config import EncoderConfig
from perceiverio.tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig, with_modality_names
from perceiverio.weights import to_haiku


def _inputs(batch: int = 2, frames: int = 4, samples: int = 128, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(batch, frames, 3, 16, 16, generator=g),
        "audio": torch.randn(batch, samples, 1, generator=g),
        "label": torch.eye(classes)[torch.arange(batch) % classes],
    }


def _perturbed(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _perturbed(MultimodalAutoencoder(MultimodalAutoencoderConfig.tiny()))


# ------------------------------------------------------------------------------------------- reference numbers
def test_golden_multimodal_autoencoding(golden):
    arrays, meta = golden("e_multimodal_autoencoding")
    assert meta["modules"]["input_preprocessor"]["kwargs"]["min_padding_size"] == 4
    params = {"params": {k[7:]: v for k, v in arrays.items() if k.startswith("params/")}}
    model = MultimodalAutoencoder.from_haiku(params, MultimodalAutoencoderConfig.tiny())
    inputs = {
        "image": torch.from_numpy(arrays["input/images"]).permute(0, 1, 4, 2, 3),  # BTHWC -> BTCHW
        "audio": torch.from_numpy(arrays["input/audio"]),
        "label": torch.from_numpy(arrays["input/label"]),
    }
    points = {
        "image": torch.from_numpy(arrays["input/subsampled_output_points/image"]),
        "audio": torch.from_numpy(arrays["input/subsampled_output_points/audio"]),
        "label": None,
    }
    with torch.no_grad():
        out = model(inputs, points)
        tokens, sizes = model.input_adapter(inputs)
    assert sizes == {"audio": 16, "image": 64, "label": 1}
    # preprocessed inputs: Fourier features at high frequency, compare loosely (golden README, float32 note)
    np.testing.assert_allclose(tokens.numpy(), arrays["intermediate/multimodal_preprocessor/__call__/0/0"], atol=2e-4)
    for name in ("audio", "image", "label"):
        assert_close_rel(out[name], arrays[f"output/{name}"], rtol=1e-5)


def test_haiku_round_trip(tiny):
    again = MultimodalAutoencoder.from_haiku(to_haiku(tiny), tiny.config)
    for k, v in tiny.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def _hf_tiny():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.PerceiverConfig(
        num_latents=8,
        d_latents=32,
        d_model=16,
        num_blocks=1,
        num_self_attends_per_block=2,
        num_self_attention_heads=4,
        num_cross_attention_heads=1,
        num_labels=5,
        num_frames=2,
        image_size=8,
        audio_samples_per_frame=32,
        samples_per_patch=8,
        output_shape=[1, 2, 16, 16],
        output_num_channels=16,
    )
    cfg._label_trainable_num_channels = 24
    torch.manual_seed(1)
    return _perturbed(transformers.PerceiverForMultimodalAutoencoding(cfg), seed=1)


def test_transformers_equivalence():
    hf = _hf_tiny()
    model = MultimodalAutoencoder.from_transformers(hf)
    inputs = _inputs(batch=2, frames=2, samples=64)
    points = {
        "image": torch.randint(0, 2 * 16 * 16, (40,), generator=torch.Generator().manual_seed(3)),
        "audio": torch.tensor([0, 3, 5, 7]),
        "label": None,
    }
    with torch.no_grad():
        expected = hf(inputs=inputs, subsampled_output_points=points).logits
        out = model(inputs, points)
    assert out["audio"].shape == (2, 4 * 8) and out["image"].shape == (2, 40, 3) and out["label"].shape == (2, 5)
    for name in ("audio", "image", "label"):
        assert_close_rel(out[name], expected[name].numpy(), rtol=1e-5)

    # our modality names are free: transformers' audio/image/label are matched by kind
    renamed = with_modality_names(model.config, {"image": "rgb", "audio": "sound"})
    other = MultimodalAutoencoder.from_transformers(hf, config=renamed)
    with torch.no_grad():
        out2 = other(
            {"rgb": inputs["image"], "sound": inputs["audio"], "label": inputs["label"]},
            {"rgb": points["image"], "sound": points["audio"], "label": None},
        )
    assert list(other.input_adapter.adapters) == ["label", "rgb", "sound"]
    for ours, theirs in (("rgb", "image"), ("sound", "audio"), ("label", "label")):
        assert_close_rel(out2[ours], expected[theirs].numpy(), rtol=1e-5)


def test_transformers_state_dict_and_bad_source():
    hf = _hf_tiny()
    model = MultimodalAutoencoder.from_transformers(hf.state_dict())  # sizes from the shapes
    assert model.config.modality_configs["label"].num_classes == 5
    assert model.config.modality_configs["audio"].samples_per_patch == 8
    with pytest.raises(ValueError):
        MultimodalAutoencoder.from_transformers({"perceiver.embeddings.latents": torch.zeros(8, 32)})


def test_kinetics_parameter_count_equals_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.PerceiverConfig(
        num_latents=784,
        d_latents=512,
        d_model=704,
        num_blocks=1,
        num_self_attends_per_block=8,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        num_labels=700,
        num_frames=16,
        image_size=224,
        audio_samples_per_frame=1920,
        samples_per_patch=16,
        output_shape=[1, 16, 224, 224],
    )
    with torch.device("meta"):
        hf = transformers.PerceiverForMultimodalAutoencoding(cfg)
        ours = MultimodalAutoencoder(MultimodalAutoencoderConfig.kinetics())
    n_hf = sum(p.numel() for p in hf.parameters())
    assert ours.num_parameters() == n_hf == 19_858_855
    assert ours.input_adapter.num_input_channels == 704
    assert ours.output_queries.num_query_channels == 1026
    assert {n: ours.num_points(n) for n in ours.modalities} == {"audio": 1920, "image": 16 * 224 * 224, "label": 1}
    # transformers' Kinetics config converts to ours (up to numerics and transformers' image_size choice)
    from perceiverio.weights.multimodal import config_from_hf

    kinetics, mine = MultimodalAutoencoderConfig.kinetics(), config_from_hf(cfg.to_dict())
    assert dataclasses.replace(mine, modalities=kinetics.modalities) == kinetics
    image = mine.modality_configs["image"]  # image_size=224 here gives max_resolution (16, 224, 224)
    assert dataclasses.replace(image, max_resolution=(16, 56, 56)) == kinetics.modality_configs["image"]
    assert {n: c for n, c in mine.modalities if n != "image"} == {n: c for n, c in kinetics.modalities if n != "image"}


# --------------------------------------------------------------------------------------------- decoding
def test_reconstruct_equals_one_shot_and_shapes(tiny):
    inputs = _inputs()
    with torch.no_grad():
        full = tiny(inputs)  # every point of every modality at once
    rec = tiny.reconstruct(inputs, chunk_size=37)
    assert rec["image"].shape == (2, 4, 3, 16, 16) and rec["audio"].shape == (2, 128) and rec["label"].shape == (2, 5)
    video = full["image"].reshape(2, 4, 16, 16, 3).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(rec["image"], video, rtol=0, atol=1e-5)
    torch.testing.assert_close(rec["audio"], full["audio"], rtol=0, atol=1e-5)
    torch.testing.assert_close(rec["label"], full["label"], rtol=0, atol=1e-5)


def test_subset_decoding_matches_full_rows(tiny):
    inputs = _inputs()
    with torch.no_grad():
        full = tiny(inputs)
        idx = torch.tensor([5, 0, 1023, 77, 300])
        patches = torch.tensor([15, 2])
        part = tiny(inputs, {"image": idx, "audio": patches})
        none = torch.empty(0, dtype=torch.long)
        label_only = tiny(inputs, {"image": none, "audio": none})
        per_example = tiny(inputs, {"image": torch.stack([idx, idx.flip(0)])})
    # absent modalities (the label here) are decoded at every point; an empty selection leaves one out
    assert set(part) == {"image", "audio", "label"} and set(label_only) == {"label"}
    torch.testing.assert_close(part["label"], full["label"], rtol=0, atol=1e-5)
    torch.testing.assert_close(per_example["audio"], full["audio"], rtol=0, atol=1e-5)
    assert part["image"].shape == (2, 5, 3) and part["audio"].shape == (2, 2 * 8)  # sizes from the points
    torch.testing.assert_close(part["image"], full["image"][:, idx], rtol=0, atol=1e-5)
    audio = full["audio"].reshape(2, 16, 8)[:, patches].reshape(2, -1)
    torch.testing.assert_close(part["audio"], audio, rtol=0, atol=1e-5)
    torch.testing.assert_close(label_only["label"], full["label"], rtol=0, atol=1e-5)
    torch.testing.assert_close(per_example["image"][1], full["image"][1, idx.flip(0)], rtol=0, atol=1e-5)


def test_loss_helper(tiny):
    inputs = _inputs()
    points = {"image": torch.tensor([0, 9, 100]), "audio": torch.tensor([1, 4]), "label": None}
    out = tiny(inputs, points)
    targets = tiny.targets(inputs, points)
    assert targets["image"].shape == out["image"].shape and targets["audio"].shape == out["audio"].shape
    torch.testing.assert_close(targets["audio"][:, :8], inputs["audio"][:, 8:16, 0])
    torch.testing.assert_close(targets["image"][:, 1], inputs["image"][:, 0, :, 0, 9])
    result = tiny.loss(out, targets)
    expected = (
        0.03 * (out["image"] - targets["image"]).abs().mean()
        + (out["audio"] - targets["audio"]).abs().mean()
        + 1e-4 * torch.nn.functional.cross_entropy(out["label"], inputs["label"].argmax(-1))
    )
    torch.testing.assert_close(result.loss, expected)
    result.loss.backward()
    assert tiny.decoder.projection.weight.grad is not None
    tiny.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------------------- naming and order
def test_user_modality_names_and_sorted_order():
    cfg = MultimodalAutoencoderConfig(
        modalities={
            "sound": AudioAdapterConfig(num_samples=64, samples_per_patch=8, num_bands=4),
            "rgb": ImageAdapterConfig(image_shape=(2, 8, 8), prep_type="patches", spatial_downsample=4, num_bands=2),
            "caption": LabelAdapterConfig(num_classes=3, num_query_channels=8),
        },
        encoder=EncoderConfig(
            num_latents=4, num_latent_channels=16, num_self_attention_heads=2, num_self_attends_per_block=1
        ),
    )
    model = MultimodalAutoencoder(cfg).eval()
    assert model.modalities == ["caption", "rgb", "sound"]
    inputs = {"sound": torch.randn(1, 64), "rgb": torch.rand(1, 2, 3, 8, 8), "caption": torch.tensor([2])}
    with torch.no_grad():
        tokens, sizes = model.input_adapter(inputs)
        rgb = model.input_adapter.pad("rgb", model.input_adapter.adapters["rgb"](inputs["rgb"]))
        out = model(inputs)
    assert list(sizes) == ["caption", "rgb", "sound"] and sizes == {"caption": 1, "rgb": 8, "sound": 8}
    torch.testing.assert_close(tokens[:, 1:9], rgb)  # sorted name order: caption, rgb, sound
    assert out["rgb"].shape == (1, 2 * 8 * 8, 3) and out["sound"].shape == (1, 64) and out["caption"].shape == (1, 3)
    assert cfg.decoder.num_query_channels == max(3 * (2 * 2 + 1), 2 * 4 + 1, 8) + 2


# --------------------------------------------------------------------------------------------------- masking
def _masking_adapter(p: float, in_eval: bool = False) -> MultimodalInputAdapter:
    audio = AudioInputAdapter(AudioAdapterConfig(num_samples=64, samples_per_patch=4, num_bands=2))
    return MultimodalInputAdapter(
        {"audio": audio}, min_padding_size=2, mask_probs={"audio": p}, apply_mask_in_eval=in_eval
    )


def test_masking_reproducible_and_p0_identity():
    x = {"audio": torch.randn(3, 64)}
    half = _masking_adapter(0.5).train()
    a, _ = half(x, generator=torch.Generator().manual_seed(7))
    b, _ = half(x, generator=torch.Generator().manual_seed(7))
    c, _ = half(x, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    token = half.mask_tokens["audio"][0]
    masked = (a == token).all(-1)
    assert 0 < int(masked.sum()) < masked.numel()  # some tokens replaced, some kept
    plain, _ = half(x, apply_mask=False)
    torch.testing.assert_close(a[~masked], plain[~masked], rtol=0, atol=0)

    zero = _masking_adapter(0.0).train()
    torch.testing.assert_close(zero(x)[0], zero(x, apply_mask=False)[0], rtol=0, atol=0)
    one = _masking_adapter(1.0).train()
    assert (one(x)[0] == one.mask_tokens["audio"][0]).all()
    # eval: no masking unless asked (the official code always masks; the Kinetics preset asks)
    torch.testing.assert_close(one.eval()(x)[0], one(x, apply_mask=False)[0], rtol=0, atol=0)
    kinetics_like = _masking_adapter(1.0, in_eval=True).eval()
    assert (kinetics_like(x)[0] == kinetics_like.mask_tokens["audio"][0]).all()


def test_label_is_masked_at_eval_in_presets(tiny):
    assert tiny.config.apply_mask_in_eval and dict(tiny.config.mask_probs)["label"] == 1.0
    a, b = _inputs(), _inputs()
    b["label"] = torch.zeros_like(b["label"])
    with torch.no_grad():
        torch.testing.assert_close(tiny(a)["label"], tiny(b)["label"], rtol=0, atol=0)  # label input is hidden


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "change",
    [
        lambda x: x.pop("label"),
        lambda x: x.update(extra=torch.zeros(2, 3)),
        lambda x: x.update(image=torch.rand(2, 4, 3, 16, 12)),
        lambda x: x.update(image=torch.rand(2, 3, 3, 16, 16)),
        lambda x: x.update(image=torch.rand(2, 4, 16, 16, 3)),
        lambda x: x.update(audio=torch.randn(2, 120, 1)),
        lambda x: x.update(audio=torch.randn(2, 128, 2)),
        lambda x: x.update(label=torch.zeros(2, 4)),
        lambda x: x.update(label=torch.tensor([0, 9])),
        lambda x: x.update(label=torch.eye(5)[:3]),
    ],
)
def test_bad_inputs_raise(tiny, change):
    x = _inputs()
    change(x)
    with pytest.raises(ValueError):
        tiny(x, {"label": None})


@pytest.mark.parametrize(
    "points",
    [
        {"image": torch.empty(0, dtype=torch.long), "audio": [], "label": torch.tensor([], dtype=torch.long)},
        {"video": None},
        {"image": torch.tensor([0.5])},
        {"image": torch.tensor([1024])},
        {"audio": torch.tensor([-1])},
        {"image": torch.zeros(3, 2, dtype=torch.long)},
    ],
)
def test_bad_points_raise(tiny, points):
    with pytest.raises(ValueError):
        tiny(_inputs(), points)


def test_bad_configs_raise():
    audio = AudioAdapterConfig(num_samples=64, samples_per_patch=8, num_bands=2)
    with pytest.raises(ValueError):
        AudioAdapterConfig(num_samples=60, samples_per_patch=8)
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(modalities={})
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(modalities={"a.b": audio})
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(modalities={"audio": audio}, mask_probs={"label": 1.0})
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(modalities={"audio": audio}, mask_probs={"audio": 1.5})
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(modalities={"audio": audio}, decoder=MultimodalAutoencoderConfig.tiny().decoder)
    with pytest.raises(ValueError):
        MultimodalAutoencoderConfig(
            modalities={"x": ImageAdapterConfig(image_shape=(8, 8), position_encoding="trainable")}
        )
    with pytest.raises(ValueError):
        MultimodalAutoencoder(MultimodalAutoencoderConfig.tiny()).reconstruct(_inputs(), chunk_size=0)
