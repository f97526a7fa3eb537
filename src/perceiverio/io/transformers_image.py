"""transformers' image classification heads -> :class:`~perceiverio.tasks.image.ImageClassifier`.

``PerceiverForImageClassificationFourier``, ``...Learned`` and ``...ConvProcessing`` all map to one class; which head a
checkpoint holds is read from its ``perceiver.input_preprocessor`` weights (``convnet_1x1``: learned, ``convnet``:
conv, none: Fourier), so ``ImageClassifier.from_transformers(source)`` accepts any of them.

What transformers hard-codes, and the converted config therefore reproduces:

* Fourier: raw pixels + 64 bands with ``max_resolution=(224, 224)`` whatever ``image_size`` says.
* Learned: Conv1x1(3→256) + a ``image_size²`` × 256 table (a square ``image_size`` grid) + Linear(256→256); the
  decoder *has* a query residual (the official learned model has none). transformers resamples the table only when
  called with ``interpolate_pos_encoding=True``; ours does it whenever the token grid differs (same bicubic
  resampling, so the outputs agree).
* Conv: the stem pads its 7×7/2 conv by 3 on every side (``Conv2dSamePadding``; TF SAME pads (2, 3) on even sizes)
  and max-pools without padding (224 → 112 → 55 instead of 56): the converted adapter sets
  ``symmetric_conv_padding=True`` and ``unpadded_pool=True``. 64 Fourier bands, ``max_resolution=(56, 56)``.

Heads: 1 cross-attention and 8 self-attention heads and ``num_blocks=8`` (the ImageNet models) are assumed for a bare
state dict; a model object or a folder brings its own config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ..adapters.image import ImageAdapterConfig
from ..core.config import DecoderConfig
from ..tasks.image import ImageClassifier, ImageClassifierConfig
from .transformers import (
    _CLS_DEC,
    KeyMap,
    StateDict,
    _decoder_from_state,
    _Head,
    _params,
    _read_source,
    encoder_config_from_hf,
    encoder_config_from_state,
    hf_activation,
    load_from_transformers,
    map_cross_attention,
    map_encoder,
    register_head,
)

_PRE = "perceiver.input_preprocessor"
FOURIER, LEARNED, CONV = ("PerceiverForImageClassificationFourier", "PerceiverForImageClassificationLearned",
                          "PerceiverForImageClassificationConvProcessing")
HEAD_NAMES = (FOURIER, LEARNED, CONV)
_REQUIRED = ("perceiver.embeddings.latents", "perceiver.encoder.cross_attention.attention.self.query.weight",
             "perceiver.encoder.self_attends.0.attention.self.query.weight", f"{_CLS_DEC}.final_layer.weight")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def head_of_state(state: StateDict) -> str:
    """Which transformers image head a state dict belongs to (by its input preprocessor's weights)."""
    if f"{_PRE}.convnet_1x1.weight" in state:
        return LEARNED
    if f"{_PRE}.convnet.conv.weight" in state:
        return CONV
    return FOURIER


def _adapter(head: str, image_size: int | None = None) -> ImageAdapterConfig:
    if head == FOURIER:
        return ImageAdapterConfig(image_shape=(224, 224), prep_type="pixels", position_encoding="fourier",
                                  num_bands=64, max_resolution=(224, 224))
    if head == CONV:
        return ImageAdapterConfig(image_shape=(224, 224), prep_type="conv", spatial_downsample=4, num_channels=64,
                                  position_encoding="fourier", num_bands=64, max_resolution=(56, 56),
                                  unpadded_pool=True, symmetric_conv_padding=True)
    return ImageAdapterConfig(image_shape=(image_size, image_size), prep_type="conv1x1", num_channels=256,
                              position_encoding="trainable", num_pos_channels=256, project_pos_dim=256)


def _image_size(raw: Any) -> int:
    """transformers' ``image_size`` (an int, or a square [n, n]) for the learned head's table."""
    size = raw if isinstance(raw, int) else (raw[0] if isinstance(raw, (list, tuple)) and len(set(raw)) == 1
                                             else None)
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"PerceiverForImageClassificationLearned needs a square integer image_size, got {raw!r}")
    return size


def _from_hf(hf: Mapping[str, Any]) -> ImageClassifierConfig:
    arch = [a for a in (hf.get("architectures") or []) if a in HEAD_NAMES]
    if len(arch) != 1:
        raise ValueError("cannot tell which transformers image head this config belongs to; load through "
                         "ImageClassifier.from_transformers(source), which reads it from the weights")
    id2label = hf.get("id2label")
    num_classes = len(id2label) if id2label else int(hf.get("num_labels", 2))
    return ImageClassifierConfig(
        adapter=_adapter(arch[0], _image_size(hf.get("image_size", 56)) if arch[0] == LEARNED else None),
        encoder=encoder_config_from_hf(hf), num_classes=num_classes,
        decoder=DecoderConfig(num_query_channels=hf["d_latents"], num_heads=1, use_query_residual=True))


def _from_state(state: StateDict) -> ImageClassifierConfig:
    head = head_of_state(state)
    size = None
    if head == LEARNED:
        p = state[f"{_PRE}.position_embeddings.position_embeddings"].shape[0]
        size = math.isqrt(p)
        if size * size != p:
            raise ValueError(f"the learned position table has {p} rows, not image_size² for a square image")
    encoder = dataclasses.replace(encoder_config_from_state(state, num_cross_attention_heads=1,
                                                            num_self_attention_heads=8), num_blocks=8)
    return ImageClassifierConfig(
        adapter=_adapter(head, size), encoder=encoder,
        decoder=_decoder_from_state(state, f"{_CLS_DEC}.decoding_cross_attention", 1, True),
        num_classes=state[f"{_CLS_DEC}.final_layer.weight"].shape[0])


def _keys(config: ImageClassifierConfig) -> KeyMap:
    keys = (map_encoder(config.encoder.num_self_attends_per_block)
            | {"output_queries.embeddings": f"{_CLS_DEC}.output_position_encodings.position_embeddings"}
            | map_cross_attention("decoder.cross_attention", f"{_CLS_DEC}.decoding_cross_attention")
            | _params("decoder", _CLS_DEC, {"projection": "final_layer"}))
    a = config.adapter
    if a.prep_type == "conv1x1":
        keys |= _params("input_adapter", _PRE, {"conv": "convnet_1x1"})
    elif a.prep_type == "conv":
        keys |= _params("input_adapter.conv", f"{_PRE}.convnet", {"conv": "conv"}, ("weight",))
        keys |= _params("input_adapter.conv", f"{_PRE}.convnet", {"batchnorm": "batchnorm"}, _BN_KEYS)
    elif a.prep_type != "pixels":
        raise ValueError(f"transformers has no image classifier with prep_type={a.prep_type!r}")
    if a.position_encoding == "trainable":
        keys["input_adapter.position.embeddings"] = f"{_PRE}.position_embeddings.position_embeddings"
        if a.project_pos_dim:
            keys |= _params("input_adapter.position", _PRE, {"projection": "positions_projection"})
    elif a.project_pos_dim:
        keys |= _params("input_adapter", _PRE, {"pos_projection": "positions_projection"})
    return keys


register_head(ImageClassifier, _Head(
    "PerceiverForImageClassification{Fourier,Learned,ConvProcessing}", ImageClassifierConfig, _REQUIRED,
    _from_hf, _from_state, _keys))


def load_image_classifier(cls: type, source: Any, config: Any = None, **overrides: Any) -> ImageClassifier:
    """``ImageClassifier.from_transformers``: reads the source once, tells the head from its weights, then loads
    through :func:`~perceiverio.io.transformers.load_from_transformers` (same sources, checks and numerics)."""
    state, hf_raw = _read_source(source)
    if config is not None and not isinstance(config, ImageClassifierConfig):
        if not (isinstance(config, Mapping) or hasattr(config, "to_dict")):
            raise ValueError(f"config must be an ImageClassifierConfig or a transformers PerceiverConfig, got "
                             f"{type(config).__name__}")
        hf_raw, config = (dict(config) if isinstance(config, Mapping) else config.to_dict()), None
    if hf_raw is not None:
        named = [a for a in (hf_raw.get("architectures") or []) if a.startswith("Perceiver")]
        if named and not set(named) & set(HEAD_NAMES):
            raise ValueError(f"the checkpoint is a transformers {named[0]}, not one of {', '.join(HEAD_NAMES)}")
    if config is None and hf_raw is not None:  # the head is known from the weights, not from the config
        config = {**hf_raw, "architectures": [head_of_state(state)]}
    elif config is not None and hf_raw is not None:  # our config: keep the checkpoint's activation
        overrides = {"activation": hf_activation(hf_raw.get("hidden_act", "gelu")), **overrides}
    return load_from_transformers(cls, state, config, **overrides)
