"""Haiku -> :class:`~perceiverio.tasks.image.ImageClassifier` (DeepMind's ImageNet checkpoints and colab models).

Official names (``ImagePreprocessor`` is ``image_preprocessor``; see ``shared/golden/README.md``):

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

import torch
from torch import nn

from ..adapters.image import ImageAdapterConfig
from ..tasks.image import ImageClassifier, ImageClassifierConfig
from .haiku import (
    CLASSIFIER_DECODER_PREFIXES,
    ENCODER_PREFIXES,
    HaikuParams,
    StateDict,
    basic_decoder,
    encoder,
    infer_decoder_config,
    infer_encoder_config,
    linear,
    put,
    register,
)

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


def conv_stem(hp: HaikuParams, hk: str, pt: str, out: StateDict) -> None:
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


def image_preprocessor(hp: HaikuParams, config: ImageAdapterConfig, pt: str, out: StateDict,
                       hk: str = PREPROCESSOR) -> None:
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
        put(hp, f"{hk}/~_build_network_inputs/trainable_position_encoding/pos_embs", f"{pt}.position.embeddings",
            out)
        if config.project_pos_dim:
            linear(hp, projector, f"{pt}.position.projection", out)
    elif config.position_encoding == "fourier" and config.project_pos_dim:
        linear(hp, projector, f"{pt}.pos_projection", out)


def _convert(hp: HaikuParams, model: nn.Module) -> StateDict:
    out: StateDict = {}
    image_preprocessor(hp, model.config.adapter, "input_adapter", out)
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, hp.prefix(CLASSIFIER_DECODER_PREFIXES), "decoder", out, True, queries="output_queries")
    return out


def _infer(hp: HaikuParams, config_cls: type) -> ImageClassifierConfig:
    """Sizes from the arrays, everything else from the released preset with the same preprocessing."""
    has = hp.params.__contains__
    if has(f"{CONV_STEM}/conv/w"):
        preset, w = config_cls.imagenet_conv(), hp.shape(f"{CONV_STEM}/conv/w")
        fields = dict(num_image_channels=w[2], num_channels=w[3])
    elif has(f"{CONV1X1}/w"):
        preset, w = config_cls.imagenet_learned(), hp.shape(f"{CONV1X1}/w")
        fields = dict(num_image_channels=w[2], num_channels=w[3])
    elif has(f"{PATCHES_LINEAR}/w"):
        raise ValueError("an image classifier with patches + conv_after_patching needs config= (patch size and image "
                         "size are not visible in the arrays)")
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
        adapter = dataclasses.replace(adapter, position_encoding="trainable", num_pos_channels=c,
                                      project_pos_dim=projected, image_shape=(side * s, side * s))
    else:  # Fourier: 2 dims, positions concatenated, sines and cosines: 2 + 4K channels
        pos = (projected or c_in - feat)
        if projected is not None or (pos - 2) % 4 or pos <= 2:
            raise ValueError(f"cannot infer the Fourier encoding of {pos} position channels: pass config=")
        adapter = dataclasses.replace(adapter, position_encoding="fourier", num_bands=(pos - 2) // 4)
    dec = infer_decoder_config(hp, hp.prefix(CLASSIFIER_DECODER_PREFIXES), preset.decoder)
    if dec.num_output_channels is None:
        raise ValueError("the classification decoder has no 'output' Linear")
    return config_cls(adapter=adapter, encoder=infer_encoder_config(hp, enc_prefix, c_in, preset.encoder),
                      decoder=dataclasses.replace(dec, num_output_channels=None),
                      num_classes=dec.num_output_channels)


register(ImageClassifier, ImageClassifierConfig, _infer, _convert)
