"""Which model class has which loader: the registry's table, and methods that exist only where a converter does."""

from __future__ import annotations

import pydoc

import pytest

from perceiverio import (
    ImageClassifier,
    MaskedLanguageModel,
    MultimodalAutoencoder,
    MultitaskClassifier,
    OpticalFlow,
    PerceiverIO,
    SequenceClassifier,
    SetModel,
)
from perceiverio.weights.registry import REGISTRY, Converters, converters, model_class_for

# class -> (has from_transformers, has from_haiku)
LOADERS = {
    PerceiverIO: (False, True),
    MaskedLanguageModel: (True, True),
    SequenceClassifier: (True, True),
    MultitaskClassifier: (False, False),
    ImageClassifier: (True, True),
    OpticalFlow: (True, True),
    MultimodalAutoencoder: (True, True),
    SetModel: (False, False),
}


@pytest.mark.parametrize("cls", list(LOADERS), ids=lambda c: c.__name__)
def test_loaders_exist_exactly_where_a_converter_does(cls):
    transformers, haiku = LOADERS[cls]
    assert hasattr(cls, "from_transformers") is transformers
    assert hasattr(cls, "from_haiku") is haiku
    for name in ("from_pretrained", "save_pretrained", "push_to_hub"):  # every model
        assert hasattr(cls, name)


def test_registry_names_every_model_class():
    assert set(REGISTRY) == set(LOADERS)


def test_subclasses():
    class MyMLM(MaskedLanguageModel):
        pass

    class MySets(SetModel):
        pass

    class MyPerceiver(PerceiverIO):  # adapters of its own: PerceiverIO's generic Haiku converter does not apply
        pass

    assert hasattr(MyMLM, "from_transformers") and hasattr(MyMLM, "from_haiku")
    assert not hasattr(MySets, "from_haiku") and not hasattr(MySets, "from_transformers")
    assert not hasattr(MyPerceiver, "from_haiku") and hasattr(MyPerceiver, "from_pretrained")
    assert converters(MyPerceiver) == Converters()
    with pytest.raises(AttributeError, match="MyPerceiver has no from_haiku"):
        MyPerceiver.from_haiku({})


def test_methods_are_documented():
    for method in (
        MaskedLanguageModel.from_transformers,
        MaskedLanguageModel.from_haiku,
        MaskedLanguageModel.from_pretrained,
        MaskedLanguageModel.save_pretrained,
        MaskedLanguageModel.push_to_hub,
    ):
        assert method.__doc__ and len(method.__doc__) > 80, method
    assert MaskedLanguageModel.from_transformers.__self__ is MaskedLanguageModel
    text = pydoc.render_doc(SetModel)  # help() on a class whose loaders are absent still renders
    assert "from_pretrained" in text


def test_architectures_map_to_classes():
    assert model_class_for(["PerceiverForMaskedLM"]) is MaskedLanguageModel
    assert model_class_for(["PerceiverForImageClassificationConvProcessing"]) is ImageClassifier
    assert model_class_for(["PerceiverForMultimodalAutoencoding"]) is MultimodalAutoencoder
    assert model_class_for(["PerceiverForOpticalFlow"]) is OpticalFlow
    assert model_class_for(["BertForMaskedLM"]) is None
