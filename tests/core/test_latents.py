"""Latent resizing: the closed form of resize_latent_array, resize_latents on every task model (other weights
bitwise, config updated, save/load round trip), the load-time override and its input contract."""

import copy

import pytest
import torch

import perceiverio as p
from perceiverio.core.latents import resize_latent_array

MODELS = {
    "mlm": lambda: p.MaskedLanguageModel(p.MaskedLanguageModelConfig.tiny(max_seq_len=16)),
    "classifier": lambda: p.SequenceClassifier(p.SequenceClassifierConfig.tiny(num_classes=3, max_seq_len=16)),
    "multitask": lambda: p.MultitaskClassifier(p.MultitaskClassifierConfig.tiny(max_seq_len=16)),
    "image": lambda: p.ImageClassifier(p.ImageClassifierConfig.tiny(num_classes=10)),
    "flow": lambda: p.OpticalFlow(p.OpticalFlowConfig.tiny()),
    "multimodal": lambda: p.MultimodalAutoencoder(p.MultimodalAutoencoderConfig.tiny()),
    "set": lambda: p.SetModel(p.SetModelConfig.tiny()),
}


def _rows(n: int, d: int = 3) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)


def test_same_size_is_the_identity_and_a_copy():
    z = _rows(7)
    out = resize_latent_array(z, 7)
    assert torch.equal(out, z) and out.data_ptr() != z.data_ptr()


def test_doubling_interpolates_between_neighbours():
    z = _rows(5)
    out = resize_latent_array(z, 10)  # [10, 3]
    assert out.shape == (10, 3)
    torch.testing.assert_close(out[0], z[0])  # the end rows are copied once
    torch.testing.assert_close(out[9], z[4])
    for k in range(1, 5):  # each row k has offspring 2k (leaning on k - 1) and 2k - 1 ... (leaning on k + 1)
        torch.testing.assert_close(out[2 * k], 0.75 * z[k] + 0.25 * z[k - 1])
    for k in range(4):
        torch.testing.assert_close(out[2 * k + 1], 0.75 * z[k] + 0.25 * z[k + 1])
    assert len({tuple(r.tolist()) for r in out}) == 10  # no two new latents are equal


def test_growing_follows_the_half_sample_closed_form():
    z, n = _rows(4), 7
    out = resize_latent_array(z, n)
    for i in range(n):
        t = min(max((i + 0.5) * 4 / n - 0.5, 0.0), 3.0)
        lo = int(t)
        f = t - lo
        expected = (1 - f) * z[lo] + f * z[min(lo + 1, 3)]
        torch.testing.assert_close(out[i], expected)


def test_halving_averages_neighbour_pairs_and_shrinking_averages_each_share():
    z = _rows(8)
    torch.testing.assert_close(resize_latent_array(z, 4), (z[0::2] + z[1::2]) / 2)
    torch.testing.assert_close(resize_latent_array(z, 1), z.mean(0, keepdim=True))
    out = resize_latent_array(z[:4], 3)  # shares [0, 4/3), [4/3, 8/3), [8/3, 4): rows 0-1, 1-2, 2-3
    torch.testing.assert_close(out, torch.stack([z[0:2].mean(0), z[1:3].mean(0), z[2:4].mean(0)]))


def test_dtype_device_and_no_gradient_history():
    z = torch.nn.Parameter(torch.randn(6, 4).to(torch.bfloat16))
    out = resize_latent_array(z, 12)
    assert out.dtype == torch.bfloat16 and not out.requires_grad
    expected = resize_latent_array(z.detach().float(), 12).to(torch.bfloat16)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "8", None, 2**31])
def test_bad_sizes_are_refused_with_one_line(bad):
    model = MODELS["image"]()
    with pytest.raises(ValueError, match=r"resize_latents\(n\) must be a positive int.*got") as e:
        model.resize_latents(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^n must be a positive int"):
        resize_latent_array(torch.zeros(4, 2), bad)


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(2, 3, 4), torch.zeros(4, 2, dtype=torch.long), [1.0]])
def test_bad_latent_arrays_are_refused(bad):
    with pytest.raises(ValueError, match="latents must be a 2-d floating-point tensor"):
        resize_latent_array(bad, 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_resize_latents_keeps_every_other_weight_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = MODELS[name]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = model.config.encoder.num_latents
    assert model.resize_latents(2 * n) is model
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before if k != "encoder.latents")
    assert torch.equal(after["encoder.latents"], resize_latent_array(before["encoder.latents"], 2 * n))
    assert model.encoder.latents.requires_grad and isinstance(model.encoder.latents, torch.nn.Parameter)
    assert model.config.encoder.num_latents == 2 * n and model.encoder.config is model.config.encoder
    model.save_pretrained(tmp_path / name)
    loaded = type(model).from_pretrained(tmp_path / name)
    assert loaded.config == model.config
    assert all(torch.equal(v, after[k]) for k, v in loaded.state_dict().items())


def test_the_outputs_keep_their_shape_and_same_size_keeps_the_outputs():
    torch.manual_seed(0)
    model = MODELS["image"]().eval()
    images = torch.randn(2, 3, 32, 32)
    reference = model(images).logits
    same = copy.deepcopy(model).resize_latents(model.config.encoder.num_latents)
    assert torch.equal(same(images).logits, reference)
    for n in (1, 5, 64):
        out = copy.deepcopy(model).resize_latents(n)(images).logits
        assert out.shape == reference.shape and torch.isfinite(out).all()


def test_from_pretrained_num_latents_resizes_after_loading(tmp_path):
    torch.manual_seed(0)
    model = MODELS["classifier"]()
    model.save_pretrained(tmp_path / "m")
    loaded = p.SequenceClassifier.from_pretrained(tmp_path / "m", num_latents=12)
    expected = copy.deepcopy(model).resize_latents(12)
    assert loaded.config == expected.config and loaded.config.encoder.num_latents == 12
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert not loaded.training
    same = p.SequenceClassifier.from_pretrained(tmp_path / "m", num_latents=model.config.encoder.num_latents)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in same.state_dict().items())
    with pytest.raises(ValueError, match="num_latents must be a positive int.*got 0"):
        p.SequenceClassifier.from_pretrained(tmp_path / "m", num_latents=0)


def test_the_file_checks_still_run_with_num_latents(tmp_path):
    import json

    model = MODELS["image"]()  # 16 latents
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["encoder"]["num_latents"] = 8  # the file's latents no longer fit the config
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"encoder.latents has shape \[16, 32\].*declares \[8, 32\]"):  # no resize
        p.ImageClassifier.from_pretrained(tmp_path / "m", num_latents=16)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x05")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        p.ImageClassifier.from_pretrained(tmp_path / "m", num_latents=8)
