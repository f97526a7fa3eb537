"""Which model class loads from where: the one table of converters, and the methods it gives the models.

:data:`REGISTRY` names every model class of the library with its converters (a :class:`TransformersHead` and/or a
:class:`HaikuConverter`). A class's converters are those of the most specific class of its MRO that the table names,
so a subclass of ``MaskedLanguageModel`` loads like one; the plain :class:`PerceiverIO` entry applies to that class
only (a subclass with adapters of its own needs its own converter). Adding a model means adding one row here (and,
for your own subclass, ``REGISTRY[MyModel] = Converters(...)``).

The methods, installed on :class:`PerceiverIO` when this module is imported (``import perceiverio`` does):

* ``Model.from_transformers(...)`` and ``Model.from_haiku(...)``: exist exactly on the classes that have a converter
  of that kind (``hasattr(SetModel, "from_haiku")`` is False), through :class:`ConverterMethod`;
* ``Model.from_pretrained(name_or_path)``, ``model.save_pretrained(folder)``, ``model.push_to_hub(repo_id)``,
  ``model.export(path, format="onnx"|"pt2")``: on every model; the first three also on
  :class:`~perceiverio.tasks.causal.CausalLanguageModel` (not a PerceiverIO subclass).
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.perceiver import PerceiverIO
from ..tasks.causal import CausalLanguageModel
from ..tasks.flow import OpticalFlow
from ..tasks.image import ImageClassifier
from ..tasks.language import MaskedLanguageModel, MultitaskClassifier, SequenceClassifier
from ..tasks.multimodal import MultimodalAutoencoder
from ..tasks.sets import SetModel
from . import flow, image, language, multimodal, perceiver
from .checkpoint import load_pretrained, push_to_hub, save_pretrained
from .export import export
from .haiku import HaikuConverter, export_haiku, load_from_haiku
from .transformers import TransformersHead


@dataclasses.dataclass(frozen=True)
class Converters:
    """The converters of one model class; ``inherited=False``: they apply to that class only, not its subclasses."""

    transformers: TransformersHead | None = None
    haiku: HaikuConverter | None = None
    inherited: bool = True


REGISTRY: dict[type, Converters] = {
    PerceiverIO: Converters(haiku=perceiver.PERCEIVER_HAIKU, inherited=False),
    MaskedLanguageModel: Converters(transformers=language.MLM_TRANSFORMERS, haiku=language.MLM_HAIKU),
    SequenceClassifier: Converters(transformers=language.CLASSIFIER_TRANSFORMERS, haiku=language.CLASSIFIER_HAIKU),
    MultitaskClassifier: Converters(),  # no released checkpoint in either format
    ImageClassifier: Converters(transformers=image.TRANSFORMERS, haiku=image.HAIKU),
    OpticalFlow: Converters(transformers=flow.TRANSFORMERS, haiku=flow.HAIKU),
    MultimodalAutoencoder: Converters(transformers=multimodal.TRANSFORMERS, haiku=multimodal.HAIKU),
    SetModel: Converters(),  # no released checkpoint in either format
}
NONE = Converters()


def converters(cls: type) -> Converters:
    """The converters of ``cls``: the entry of the most specific class of ``cls.__mro__`` in :data:`REGISTRY`."""
    for klass in cls.__mro__:
        entry = REGISTRY.get(klass)
        if entry is not None:
            return entry if entry.inherited or klass is cls else NONE
    return NONE


def _supported(kind: str) -> str:
    return ", ".join(c.__name__ for c, e in REGISTRY.items() if getattr(e, kind) is not None)


def transformers_head(cls: type) -> TransformersHead:
    head = converters(cls).transformers
    if head is None:
        raise ValueError(f"{cls.__name__} cannot be loaded from transformers; supported: {_supported('transformers')}")
    return head


def haiku_converter(cls: type) -> HaikuConverter:
    converter = converters(cls).haiku
    if converter is None:
        raise ValueError(f"Haiku conversion does not support {cls.__name__}; supported: {_supported('haiku')}")
    return converter


def model_class_for(architectures: Iterable[str]) -> type | None:
    """The model class that loads a transformers checkpoint whose ``config.json`` names ``architectures``."""
    for arch in architectures:
        for cls, entry in REGISTRY.items():
            if entry.transformers is not None and arch in entry.transformers.architectures:
                return cls
    return None


def to_haiku(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """``model``'s weights in DeepMind's Haiku naming (the inverse of ``from_haiku``): nested ``{module: {param:
    float32 array}}`` (Linear ``w`` as ``[in, out]``, Conv ``w`` as HWIO), or ``{"params": ..., "state": ...}`` for a
    model with BatchNorm statistics."""
    return export_haiku(model, haiku_converter(type(model)))


# ------------------------------------------------------------------------------------------------ the methods
def from_transformers(
    cls: type,
    source: Any,
    config: Any = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build this model from a Hugging Face ``transformers`` Perceiver checkpoint (eval mode).

    Args:
        source: a transformers model object, its ``state_dict()``, a local folder written by ``save_pretrained``
            (``config.json`` + ``model.safetensors``, a sharded index or ``pytorch_model.bin``), or a Hugging Face
            Hub repository id such as ``"deepmind/language-perceiver"`` (only config and weights are fetched, into
            the Hub cache; ``HF_HUB_OFFLINE=1`` reads the cache only).
        config: our config (used as is, apart from ``activation``/``masking``) or a transformers
            ``PerceiverConfig``/dict; default: the checkpoint's, or inferred from a bare state dict's shapes with
            the released head counts.
        revision: branch, tag or commit of a Hub repository. token: Hub token for private or gated repositories.
        **overrides: config fields to replace, e.g. ``masking="official"`` for DeepMind's mask semantics.

    The result reproduces transformers' outputs (``activation`` from ``hidden_act``, ``masking="transformers"``).
    A wrong head, missing or unexpected keys and mismatched shapes raise ValueError; Hub access problems OSError.
    """
    return transformers_head(cls).load(cls, source, config, revision=revision, token=token, **overrides)


def from_haiku(cls: type, source: Any, config: Any = None, **overrides: Any) -> nn.Module:
    """Build this model from DeepMind's Haiku parameters (eval mode).

    Args:
        source: a ``.pickle``/``.pkl``/``.npz`` path (pickles are read by a restricted unpickler that runs no code),
            or params as ``{module: {param: array}}``, ``{"module/param": array}`` or ``{"params", "state"}``.
        config: the model's config; default: sizes inferred from the array shapes, head counts, ``num_blocks`` and
            query residuals (which no shape shows) from the released models. ``PerceiverIO`` needs one.
        **overrides: config fields to replace.

    Every parameter must come from exactly one array: missing or unexpected keys and shape mismatches raise
    ValueError naming them.
    """
    return load_from_haiku(cls, source, config, converter=haiku_converter(cls), **overrides)


def from_pretrained(
    cls: type,
    name_or_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    num_latents: int | None = None,
) -> nn.Module:
    """Load a model written by ``save_pretrained`` (eval mode): a local folder or a Hugging Face Hub repository id
    (``"org/name"``, fetched into the Hub cache; ``revision``: branch, tag or commit). The stored model must be
    this class or a subclass of it. Built without initialisation, directly on ``map_location``.
    ``num_latents``: resize the latent array to that many latents after loading (:meth:`resize_latents`),
    to fine-tune another size of the latent space."""
    return load_pretrained(
        name_or_path, expected=cls, map_location=map_location, revision=revision, token=token, num_latents=num_latents
    )


class ConverterMethod:
    """A class method that exists only on the classes :func:`converters` gives a converter of its ``kind``
    (``"transformers"`` or ``"haiku"``); elsewhere the attribute is absent (AttributeError, so ``hasattr`` is
    False)."""

    def __init__(self, function: Callable[..., nn.Module], kind: str) -> None:
        self.function, self.kind = function, kind
        self.__name__, self.__doc__ = function.__name__, function.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Callable[..., nn.Module]:
        owner = owner if owner is not None else type(instance)
        if getattr(converters(owner), self.kind) is None:
            raise AttributeError(
                f"{owner.__name__} has no {self.__name__}: no {self.kind} converter is registered "
                f"for it (perceiverio.weights.registry.REGISTRY)"
            )
        return types.MethodType(self.function, owner)


def install() -> None:
    """Give :class:`PerceiverIO` (and so every model) its weight methods."""
    PerceiverIO.from_transformers = ConverterMethod(from_transformers, "transformers")
    PerceiverIO.from_haiku = ConverterMethod(from_haiku, "haiku")
    PerceiverIO.from_pretrained = classmethod(from_pretrained)
    PerceiverIO.save_pretrained = save_pretrained
    PerceiverIO.push_to_hub = push_to_hub
    PerceiverIO.export = export
    # Perceiver AR is not a PerceiverIO subclass: the same checkpoint methods (no transformers/Haiku converter
    # methods: its official weights load through perceiverio.weights.causal)
    CausalLanguageModel.from_pretrained = classmethod(from_pretrained)
    CausalLanguageModel.save_pretrained = save_pretrained
    CausalLanguageModel.push_to_hub = push_to_hub


install()
