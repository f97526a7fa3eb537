"""Converters of :class:`~perceiverio.tasks.image.ImageClassifier` (the three ImageNet models).

**transformers.** ``PerceiverForImageClassificationFourier``, ``...Learned`` and ``...ConvProcessing``
(``deepmind/vision-perceiver-fourier``, ``-learned``, ``-conv``) all map to one class; which head a checkpoint holds is
read from its ``perceiver.input_preprocessor`` weights (``convnet_1x1``: learned, ``convnet``: conv, none: Fourier),
so ``ImageClassifier.from_transformers(source)`` accepts any of them. What transformers hard-codes, and the converted
config therefore reproduces:

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

**Haiku** (``ImagePreprocessor`` is ``image_preprocessor``; see ``shared/golden/README.md``):

* conv stem: ``image_preprocessor/~/conv2_d_downsample/~/conv/w`` (HWIO, no bias) and ``.../~/batchnorm/{scale,
  offset}`` ``[1, 1, 1, C]``; Haiku *state* ``.../batchnorm/~/{mean_ema,var_ema}/{average,hidden,counter}``
  (only ``average`` is used at inference; ``mean_ema/counter`` becomes ``num_batches_tracked``).
* conv1x1: ``image_preprocessor/~/conv2_d/{w,b}``; patches: ``image_preprocessor/patches_linear``.
* positions: ``image_preprocessor/~_build_network_inputs/trainable_position_encoding/pos_embs`` and the projector
  ``image_preprocessor/~_build_network_inputs/position_encoding_projector/linear``.
* encoder ``perceiver_encoder``; decoder ``classification_decoder/~/basic_decoder`` (query
  ``~/trainable_position_encoding/pos_embs``, final Linear ``output``).

Sizes are inferred from the arrays. What no array shows (head counts, ``num_blocks``, the decoder's query residual,
the image size of a Fourier model, ``max_resolution``, strides) comes from the released preset with the same
preprocessing (pixels: :meth:`ImageClassifierConfig.imagenet_fourier`, conv1x1: ``imagenet_learned``, conv:
``imagenet_conv``); pass ``config=`` (e.g. :meth:`ImageClassifierConfig.from_official`) for other models.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..adapters.image import ImageAdapterConfig
from ..core.config import DecoderConfig
from ..tasks.image import ImageClassifierConfig
from .haiku import (
    CLASSIFIER_DECODER_PREFIXES,
    ENCODER_PREFIXES,
    Converted,
    HaikuConverter,
    HaikuParams,
    basic_decoder,
    encoder,
    infer_decoder_config,
    infer_encoder_config,
    linear,
    put,
)
from .transformers import (
    CLASSIFICATION_DECODER,
    KeyMap,
    StateDict,
    TransformersHead,
    decoder_config_from_state,
    encoder_config_from_hf,
    encoder_config_from_state,
    hf_activation,
    map_classification_decoder,
    map_encoder,
    map_params,
    num_labels,
    read_source,
)

# ------------------------------------------------------------------------------------------------- transformers
PRE = "perceiver.input_preprocessor"
FOURIER, LEARNED, CONV = (
    "PerceiverForImageClassificationFourier",
    "PerceiverForImageClassificationLearned",
    "PerceiverForImageClassificationConvProcessing",
)
HEAD_NAMES = (FOURIER, LEARNED, CONV)
BATCHNORM_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def head_of_state(state: StateDict) -> str:
    """Which transformers image head a state dict belongs to (by its input preprocessor's weights)."""
    if f"{PRE}.convnet_1x1.weight" in state:
        return LEARNED
    if f"{PRE}.convnet.conv.weight" in state:
        return CONV
    return FOURIER


def hf_adapter(head: str, image_size: int | None = None) -> ImageAdapterConfig:
    """The image adapter that transformers' ``head`` hard-codes: the released preset's, with transformers' conv-stem
    padding (``unpadded_pool``, ``symmetric_conv_padding``) and the learned table at ``image_size``."""
    if head == FOURIER:
        return ImageClassifierConfig.imagenet_fourier().adapter
    if head == CONV:
        adapter = ImageClassifierConfig.imagenet_conv().adapter
        return dataclasses.replace(adapter, unpadded_pool=True, symmetric_conv_padding=True)
    adapter = ImageClassifierConfig.imagenet_learned().adapter
    return dataclasses.replace(adapter, image_shape=(image_size, image_size))


def _image_size(raw: Any) -> int:
    """transformers' ``image_size`` (an int, or a square [n, n]) for the learned head's table."""
    size = raw if isinstance(raw, int) else (raw[0] if isinstance(raw, (list, tuple)) and len(set(raw)) == 1 else None)
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"PerceiverForImageClassificationLearned needs a square integer image_size, got {raw!r}")
    return size


def config_from_hf(hf: Mapping[str, Any]) -> ImageClassifierConfig:
    arch = [a for a in (hf.get("architectures") or []) if a in HEAD_NAMES]
    if len(arch) != 1:
        raise ValueError(
            "cannot tell which transformers image head this config belongs to; load through "
            "ImageClassifier.from_transformers(source), which reads it from the weights"
        )
    return ImageClassifierConfig(
        adapter=hf_adapter(arch[0], _image_size(hf.get("image_size", 56)) if arch[0] == LEARNED else None),
        encoder=encoder_config_from_hf(hf),
        num_classes=num_labels(hf),
        decoder=DecoderConfig(num_query_channels=hf["d_latents"], num_heads=1, use_query_residual=True),
    )


def config_from_state(state: StateDict) -> ImageClassifierConfig:
    head = head_of_state(state)
    size = None
    if head == LEARNED:
        p = state[f"{PRE}.position_embeddings.position_embeddings"].shape[0]
        size = math.isqrt(p)
        if size * size != p:
            raise ValueError(f"the learned position table has {p} rows, not image_size² for a square image")
    encoder_config = dataclasses.replace(
        encoder_config_from_state(state, num_cross_attention_heads=1, num_self_attention_heads=8), num_blocks=8
    )
    return ImageClassifierConfig(
        adapter=hf_adapter(head, size),
        encoder=encoder_config,
        decoder=decoder_config_from_state(state, f"{CLASSIFICATION_DECODER}.decoding_cross_attention", 1, True),
        num_classes=state[f"{CLASSIFICATION_DECODER}.final_layer.weight"].shape[0],
    )


def key_map(config: ImageClassifierConfig) -> KeyMap:
    keys = map_encoder(config.encoder.num_self_attends_per_block) | map_classification_decoder()
    a = config.adapter
    if a.prep_type == "conv1x1":
        keys |= map_params("input_adapter", PRE, {"conv": "convnet_1x1"})
    elif a.prep_type == "conv":
        keys |= map_params("input_adapter.conv", f"{PRE}.convnet", {"conv": "conv"}, ("weight",))
        keys |= map_params("input_adapter.conv", f"{PRE}.convnet", {"batchnorm": "batchnorm"}, BATCHNORM_KEYS)
    elif a.prep_type != "pixels":
        raise ValueError(f"transformers has no image classifier with prep_type={a.prep_type!r}")
    if a.position_encoding == "trainable":
        keys["input_adapter.position.embeddings"] = f"{PRE}.position_embeddings.position_embeddings"
        if a.project_pos_dim:
            keys |= map_params("input_adapter.position", PRE, {"projection": "positions_projection"})
    elif a.project_pos_dim:
        keys |= map_params("input_adapter", PRE, {"pos_projection": "positions_projection"})
    return keys


class ImageHead(TransformersHead):
    """The three image heads in one: :meth:`load` tells the head from the weights before the generic loop."""

    def load(
        self,
        cls: type,
        source: Any,
        config: Any = None,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        **overrides: Any,
    ) -> nn.Module:
        read = read_source(source, revision, token)
        hf_raw = read.hf_config
        if config is not None and not isinstance(config, ImageClassifierConfig):
            if not (isinstance(config, Mapping) or hasattr(config, "to_dict")):
                raise ValueError(
                    f"config must be an ImageClassifierConfig or a transformers PerceiverConfig, got "
                    f"{type(config).__name__}"
                )
            hf_raw, config = (dict(config) if isinstance(config, Mapping) else config.to_dict()), None
        if hf_raw is not None:
            named = [a for a in (hf_raw.get("architectures") or []) if a.startswith("Perceiver")]
            if named and not set(named) & set(HEAD_NAMES):
                raise ValueError(f"the checkpoint is a transformers {named[0]}, not one of {', '.join(HEAD_NAMES)}")
        if config is None and hf_raw is not None:  # the head is known from the weights, not from the config
            config = {**hf_raw, "architectures": [head_of_state(read.state)]}
        elif config is not None and hf_raw is not None:  # our config: keep the checkpoint's activation
            overrides = {"activation": hf_activation(hf_raw.get("hidden_act", "gelu")), **overrides}
        bare = dataclasses.replace(read, hf_config=None)  # the config, if any, travels as `config`
        return super().load(cls, bare, config, **overrides)

    def load_named(self, cls: type, source: Any, config: Any = None, **overrides: Any) -> nn.Module:
        """The generic loop alone: the head must be named by the config's ``architectures`` (a model built in memory
        names none), as for any other head."""
        return super().load(cls, source, config, **overrides)


TRANSFORMERS = ImageHead(
    "PerceiverForImageClassification{Fourier,Learned,ConvProcessing}",
    HEAD_NAMES,
    ImageClassifierConfig,
    (
        "perceiver.embeddings.latents",
        "perceiver.encoder.cross_attention.attention.self.query.weight",
        "perceiver.encoder.self_attends.0.attention.self.query.weight",
        f"{CLASSIFICATION_DECODER}.final_layer.weight",
    ),
    config_from_hf,
    config_from_state,
    key_map,
)
load_named_head = TRANSFORMERS.load_named


# ------------------------------------------------------------------------------------------------- Haiku
PREPROCESSOR = "image_preprocessor"
CONV_STEM = f"{PREPROCESSOR}/~/conv2_d_downsample/~"
CONV1X1 = f"{PREPROCESSOR}/~/conv2_d"
PATCHES_LINEAR = f"{PREPROCESSOR}/patches_linear"
TRAINABLE_POS = f"{PREPROCESSOR}/~_build_network_inputs/trainable_position_encoding/pos_embs"
POS_PROJECTOR = f"{PREPROCESSOR}/~_build_network_inputs/position_encoding_projector/linear"


def _hwio_to_oihw(w: torch.Tensor) -> torch.Tensor:
    return w.permute(3, 2, 0, 1).contiguous() if w.dim() == 4 else w


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _counter(c: torch.Tensor) -> torch.Tensor:
    return c.reshape(()).long() if c.numel() == 1 else c


def conv_stem(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    """Official ``Conv2DDownsample`` (params and BatchNorm state) -> :class:`~perceiverio.adapters.image.ConvStem`."""
    put(hp, f"{hk}/conv/w", f"{pt}.conv.weight", out, _hwio_to_oihw)
    put(hp, f"{hk}/batchnorm/scale", f"{pt}.batchnorm.weight", out, _flat)
    put(hp, f"{hk}/batchnorm/offset", f"{pt}.batchnorm.bias", out, _flat)
    ema = f"state/{hk}/batchnorm/~"
    put(hp, f"{ema}/mean_ema/average", f"{pt}.batchnorm.running_mean", out, _flat)
    put(hp, f"{ema}/var_ema/average", f"{pt}.batchnorm.running_var", out, _flat)
    put(hp, f"{ema}/mean_ema/counter", f"{pt}.batchnorm.num_batches_tracked", out, _counter)
    for key in (f"{ema}/mean_ema/hidden", f"{ema}/var_ema/hidden", f"{ema}/var_ema/counter"):
        if key in hp.params:  # the EMA's internals: consumed, not needed at inference
            hp.get(key)


def image_preprocessor(
    hp: HaikuParams, config: ImageAdapterConfig, pt: str, out: Converted, hk: str = PREPROCESSOR
) -> None:
    """Official ``ImagePreprocessor`` -> :class:`~perceiverio.adapters.image.ImageInputAdapter` at torch path
    ``pt`` (features, then the trainable table or the position projector)."""
    if config.prep_type == "conv":
        conv_stem(hp, f"{hk}/~/conv2_d_downsample/~", f"{pt}.conv", out)
    elif config.prep_type == "conv1x1":
        put(hp, f"{hk}/~/conv2_d/w", f"{pt}.conv.weight", out, _hwio_to_oihw)
        put(hp, f"{hk}/~/conv2_d/b", f"{pt}.conv.bias", out)
    elif config.prep_type == "patches" and config.conv_after_patching:
        linear(hp, f"{hk}/patches_linear", f"{pt}.patches_linear", out)
    projector = f"{hk}/~_build_network_inputs/position_encoding_projector/linear"
    if config.position_encoding == "trainable":
        put(hp, f"{hk}/~_build_network_inputs/trainable_position_encoding/pos_embs", f"{pt}.position.embeddings", out)
        if config.project_pos_dim:
            linear(hp, projector, f"{pt}.position.projection", out)
    elif config.position_encoding == "fourier" and config.project_pos_dim:
        linear(hp, projector, f"{pt}.pos_projection", out)


def convert(hp: HaikuParams, model: nn.Module) -> Converted:
    out: Converted = {}
    image_preprocessor(hp, model.config.adapter, "input_adapter", out)
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, hp.prefix(CLASSIFIER_DECODER_PREFIXES), "decoder", out, True, queries="output_queries")
    return out


def infer(hp: HaikuParams, config_cls: type) -> ImageClassifierConfig:
    """Sizes from the arrays, everything else from the released preset with the same preprocessing."""
    has = hp.params.__contains__
    if has(f"{CONV_STEM}/conv/w"):
        preset, w = config_cls.imagenet_conv(), hp.shape(f"{CONV_STEM}/conv/w")
        fields = dict(num_image_channels=w[2], num_channels=w[3])
    elif has(f"{CONV1X1}/w"):
        preset, w = config_cls.imagenet_learned(), hp.shape(f"{CONV1X1}/w")
        fields = dict(num_image_channels=w[2], num_channels=w[3])
    elif has(f"{PATCHES_LINEAR}/w"):
        raise ValueError(
            "an image classifier with patches + conv_after_patching needs config= (patch size and image "
            "size are not visible in the arrays)"
        )
    else:
        preset, fields = config_cls.imagenet_fourier(), {}
    adapter = dataclasses.replace(preset.adapter, **fields)
    enc_prefix = hp.prefix(ENCODER_PREFIXES)
    c_in = hp.shape(f"{enc_prefix}/~/cross_attention/layer_norm_1/scale")[0]
    feat = adapter.num_channels if adapter.prep_type in ("conv", "conv1x1") else adapter.num_image_channels
    projected = hp.shape(f"{POS_PROJECTOR}/w")[1] if has(f"{POS_PROJECTOR}/w") else None
    if has(TRAINABLE_POS):
        p, c = hp.shape(TRAINABLE_POS)
        side = math.isqrt(p)
        if side * side != p:
            raise ValueError(f"the learned position table has {p} rows, not a square grid: pass config=")
        s = adapter.spatial_downsample if adapter.prep_type != "conv" else 4
        adapter = dataclasses.replace(
            adapter,
            position_encoding="trainable",
            num_pos_channels=c,
            project_pos_dim=projected,
            image_shape=(side * s, side * s),
        )
    else:  # Fourier: 2 dims, positions concatenated, sines and cosines: 2 + 4K channels
        pos = projected or c_in - feat
        if projected is not None or (pos - 2) % 4 or pos <= 2:
            raise ValueError(f"cannot infer the Fourier encoding of {pos} position channels: pass config=")
        adapter = dataclasses.replace(adapter, position_encoding="fourier", num_bands=(pos - 2) // 4)
    dec = infer_decoder_config(hp, hp.prefix(CLASSIFIER_DECODER_PREFIXES), preset.decoder)
    if dec.num_output_channels is None:
        raise ValueError("the classification decoder has no 'output' Linear")
    return config_cls(
        adapter=adapter,
        encoder=infer_encoder_config(hp, enc_prefix, c_in, preset.encoder),
        decoder=dataclasses.replace(dec, num_output_channels=None),
        num_classes=dec.num_output_channels,
    )


HAIKU = HaikuConverter(convert, ImageClassifierConfig, infer)
