"""save_pretrained / from_pretrained round trips for every task model, and refusals."""

import json

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
    with pytest.raises(ValueError, match="only perceiverio classes"):
        SetModel.from_pretrained(tmp_path / "set")
    (tmp_path / "set" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SetModel.from_pretrained(tmp_path / "set")


def test_no_temporary_files_left(tmp_path):
    SetModel(SetModelConfig.tiny()).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
