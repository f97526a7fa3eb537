"""Which model class loads from where (temporary: the weights/ package replaces this).

Attaches ``from_transformers``/``from_haiku`` to exactly the classes that have a converter, and
``save_pretrained``/``from_pretrained`` to every :class:`PerceiverIO`.
"""

from __future__ import annotations

from typing import Any

from ..core.perceiver import PerceiverIO
from ..tasks.flow import OpticalFlow
from ..tasks.image import ImageClassifier
from ..tasks.language import MaskedLanguageModel, SequenceClassifier
from ..tasks.multimodal import MultimodalAutoencoder
from . import haiku_flow, haiku_image, haiku_multimodal, transformers_flow, transformers_multimodal  # noqa: F401
from .checkpoint import load_pretrained, save_pretrained
from .haiku import load_from_haiku
from .transformers import load_from_transformers
from .transformers_image import load_image_classifier

TRANSFORMERS = {MaskedLanguageModel: load_from_transformers, SequenceClassifier: load_from_transformers,
                ImageClassifier: load_image_classifier, OpticalFlow: load_from_transformers,
                MultimodalAutoencoder: load_from_transformers}
HAIKU = (PerceiverIO, MaskedLanguageModel, SequenceClassifier, ImageClassifier, OpticalFlow, MultimodalAutoencoder)


def _attach() -> None:
    for model_cls, load in TRANSFORMERS.items():
        model_cls.from_transformers = classmethod(
            lambda cls, source, config=None, _load=load, **overrides: _load(cls, source, config, **overrides))
    for model_cls in HAIKU:
        model_cls.from_haiku = classmethod(
            lambda cls, source, config=None, **overrides: load_from_haiku(cls, source, config, **overrides))
    PerceiverIO.save_pretrained = lambda self, directory: save_pretrained(self, directory)
    PerceiverIO.from_pretrained = classmethod(
        lambda cls, directory, map_location="cpu": load_pretrained(directory, expected=cls, map_location=map_location))




_attach()
