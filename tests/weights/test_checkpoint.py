"""save_pretrained / from_pretrained round trips for every task model, and refusals."""

import json
import sys

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
from perceiverio.weights import config_from_dict, config_to_dict

MODELS = [
    (MaskedLanguageModel, MaskedLanguageModelConfig),
    (SequenceClassifier, SequenceClassifierConfig),
    (MultitaskClassifier, MultitaskClassifierConfig),
    (ImageClassifier, ImageClassifierConfig),
    (OpticalFlow, OpticalFlowConfig),
    (MultimodalAutoencoder, MultimodalAutoencoderConfig),
    (SetModel, SetModelConfig),
]


@pytest.mark.parametrize("cls, cfg_cls", MODELS, ids=[m[0].__name__ for m in MODELS])
def test_round_trip(tmp_path, cls, cfg_cls):
    model = cls(cfg_cls.tiny())
    assert config_from_dict(json.loads(json.dumps(config_to_dict(model.config)))) == model.config
    model.save_pretrained(tmp_path / "ckpt")
    loaded = cls.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_wrong_class_and_bad_folders(tmp_path):
    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path / "set")
    with pytest.raises(ValueError, match="holds a SetModel"):
        MaskedLanguageModel.from_pretrained(tmp_path / "set")
    with pytest.raises(ValueError, match="not a perceiverio checkpoint folder"):
        SetModel.from_pretrained(tmp_path / "missing")
    cfg = json.loads((tmp_path / "set" / "config.json").read_text())
    cfg["model_class"] = "os.system"
    (tmp_path / "set" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not one of perceiverio's model classes"):
        SetModel.from_pretrained(tmp_path / "set")
    (tmp_path / "set" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SetModel.from_pretrained(tmp_path / "set")


@pytest.mark.parametrize(
    "name",
    [
        "perceiverio.cli.main",  # a function of ours, reachable as an attribute
        "perceiverio.weights.hub.download_checkpoint",
        "perceiverio.tasks.sets.SetModelConfig",  # a class of ours, but not a model
        "perceiverio.training.base.PerceiverTask",  # a module of ours not imported by loading
        "perceiverio.core.perceiver.torch.nn.Linear",
        "os.system",
        "builtins.eval",
    ],
)
def test_model_class_outside_the_allow_list_is_refused_before_anything_is_imported_or_opened(
    tmp_path, monkeypatch, name
):
    from perceiverio.weights import checkpoint

    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["model_class"] = name
    (tmp_path / "config.json").write_text(json.dumps(meta))

    def never(*args, **kwargs):
        raise AssertionError("the weights file was opened")

    monkeypatch.setattr(checkpoint, "read_header", never)
    monkeypatch.setattr(checkpoint, "load_file", never)
    monkeypatch.setattr(checkpoint, "empty_model", never)
    modules = set(sys.modules)
    with pytest.raises(ValueError, match="is not one of perceiverio's model classes"):
        SetModel.from_pretrained(tmp_path)
    assert set(sys.modules) == modules


def test_a_config_too_large_or_not_fitting_is_refused_before_any_tensor_is_read(tmp_path, monkeypatch):
    from perceiverio.weights import checkpoint

    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["encoder"]["num_latents"] = 10**9  # 10^9 x 32 floats: 128 GB if it were allocated
    (tmp_path / "config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(checkpoint, "load_file", lambda *a, **k: pytest.fail("tensors read before the check"))
    with pytest.raises(ValueError, match=r"model.safetensors: encoder.latents has shape \[4, 32\], the model's"):
        SetModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("field", ["num_self_attends_per_block", "num_blocks"])
def test_a_config_a_billion_layers_deep_is_refused_in_the_config_not_built(tmp_path, monkeypatch, field):
    from perceiverio.weights import checkpoint

    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["encoder"][field] = 10**9  # built (or applied) one layer at a time: hours, then out of memory
    (tmp_path / "config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(checkpoint, "empty_model", lambda *a, **k: pytest.fail("built before the check"))
    with pytest.raises(ValueError, match=rf"config.json: .*EncoderConfig.{field} must be at most 1024"):
        SetModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_a_corrupt_weights_file_is_named(tmp_path, cut):
    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:cut] if cut else b"\xff" * 64)
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        SetModel.from_pretrained(tmp_path)


def test_no_temporary_files_left(tmp_path):
    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
