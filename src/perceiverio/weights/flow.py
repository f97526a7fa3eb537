"""Converters of :class:`~perceiverio.tasks.flow.OpticalFlow` (``colabs/optical_flow.ipynb``).

**transformers** ``PerceiverForOpticalFlow`` (``deepmind/optical-flow-perceiver``) hard-codes the flow architecture
around its ``PerceiverConfig``: Linear(54 -> 64) after patching, 64 Fourier bands with ``max_resolution =
config.train_size`` (so 322-channel tokens), a 1-head decoder without query residual and ``rescale_factor = 100``. Its
model takes the 3×3 patches ``[B, 2, 27, H, W]`` (our :func:`~perceiverio.adapters.image.extract_patches_3x3` moved
to channels-first) at exactly ``train_size`` and returns ``[B, H, W, 2]`` *before* the demo's ×20; ours takes the
frames and returns pixels ``[B, 2, H, W]``, i.e. ``ours == hf.permute(0, 3, 1, 2) * 20`` (pass ``output_scale=1`` to
get transformers' scale).

**Haiku** names: ``image_preprocessor/patches_linear`` (Linear 54 -> 64), ``perceiver_encoder/~/...``,
``flow_decoder/~/basic_decoder/cross_attention`` and ``flow_decoder/~/basic_decoder/output`` (Linear -> 2). The
Fourier encodings have no parameters; ``train_size`` (their ``max_resolution``) and the head counts are not visible
in the arrays and come from the config (default: the released model's, 368×496, 16 self-attention heads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..core.config import DecoderConfig
from ..tasks.flow import TRAIN_SIZE, OpticalFlow, OpticalFlowConfig
from .haiku import (
    ENCODER_PREFIXES,
    Converted,
    HaikuConverter,
    HaikuParams,
    basic_decoder,
    encoder,
    infer_decoder_config,
    infer_encoder_config,
    linear,
)
from .transformers import (
    KeyMap,
    StateDict,
    TransformersHead,
    decoder_config_from_state,
    encoder_config_from_hf,
    encoder_config_from_state,
    map_cross_attention,
    map_encoder,
    map_params,
)

# ------------------------------------------------------------------------------------------------- transformers
PRE, DEC = "perceiver.input_preprocessor", "perceiver.decoder.decoder"  # PerceiverOpticalFlowDecoder's inner decoder
HF_PATCH_CHANNELS, HF_BANDS = 64, 64  # fixed in transformers' PerceiverForOpticalFlow
HF_QUERY_CHANNELS = HF_PATCH_CHANNELS + 2 * (2 * HF_BANDS + 1)  # 322


def config_from_hf(hf: Mapping[str, Any]) -> OpticalFlowConfig:
    qk = HF_QUERY_CHANNELS if hf["cross_attention_shape_for_attention"] == "q" else None
    decoder = DecoderConfig(
        num_query_channels=HF_QUERY_CHANNELS,
        num_output_channels=2,
        num_heads=1,
        qk_channels=qk,
        use_query_residual=False,
    )
    return OpticalFlowConfig(
        train_size=tuple(hf.get("train_size") or TRAIN_SIZE),
        num_patch_channels=HF_PATCH_CHANNELS,
        num_bands=HF_BANDS,
        encoder=encoder_config_from_hf(hf),
        decoder=decoder,
    )


def config_from_state(state: StateDict) -> OpticalFlowConfig:
    """Sizes from shapes; heads (cross 1, self 16), ``train_size`` (368×496) and 64 bands as released."""
    decoder = decoder_config_from_state(state, f"{DEC}.decoding_cross_attention", 1, False)
    patch = state[f"{PRE}.conv_after_patches.weight"].shape[0]
    bands = (decoder.num_query_channels - patch - 2) // 4
    return OpticalFlowConfig(
        num_patch_channels=patch,
        num_bands=bands,
        encoder=encoder_config_from_state(state, num_cross_attention_heads=1, num_self_attention_heads=16),
        decoder=dataclasses.replace(decoder, num_output_channels=state[f"{DEC}.final_layer.weight"].shape[0]),
    )


def key_map(config: OpticalFlowConfig) -> KeyMap:
    return (
        map_encoder(config.encoder.num_self_attends_per_block)
        | map_params("input_adapter", PRE, {"patches_linear": "conv_after_patches"})
        | map_cross_attention("decoder.cross_attention", f"{DEC}.decoding_cross_attention")
        | map_params("decoder", DEC, {"projection": "final_layer"})
    )


TRANSFORMERS = TransformersHead(
    "PerceiverForOpticalFlow",
    ("PerceiverForOpticalFlow",),
    OpticalFlowConfig,
    (
        "perceiver.embeddings.latents",
        f"{PRE}.conv_after_patches.weight",
        f"{DEC}.final_layer.weight",
        f"{DEC}.decoding_cross_attention.attention.self.query.weight",
        "perceiver.encoder.self_attends.0.attention.self.query.weight",
    ),
    config_from_hf,
    config_from_state,
    key_map,
)


# ------------------------------------------------------------------------------------------------- Haiku
PATCHES = "image_preprocessor/patches_linear"
DECODER = "flow_decoder/~/basic_decoder"


def infer(hp: HaikuParams, config_cls: type) -> Any:
    default = config_cls()
    patch_in, patch_out = hp.shape(f"{PATCHES}/w")
    if patch_in != 54:
        raise ValueError(f"{PATCHES}/w has {patch_in} inputs; optical flow takes 2 frames × 27 patch values = 54")
    c = hp.shape(f"{DECODER}/cross_attention/layer_norm/scale")[0]  # query width = token width
    bands, rest = divmod(c - patch_out - 2, 4)  # C = patch + 2·(2K + 1)
    if rest or bands <= 0:
        raise ValueError(f"token width {c} minus the {patch_out} patch channels is not a 2-D Fourier width 2(2K+1)")
    enc = infer_encoder_config(hp, hp.prefix(ENCODER_PREFIXES), c, default.encoder)
    dec = infer_decoder_config(hp, DECODER, default.decoder)
    return config_cls(num_patch_channels=patch_out, num_bands=bands, encoder=enc, decoder=dec)


def convert(hp: HaikuParams, model: OpticalFlow) -> Converted:
    out: Converted = {}
    linear(hp, PATCHES, "input_adapter.patches_linear", out)
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, DECODER, "decoder", out, final_project=True)
    return out


HAIKU = HaikuConverter(convert, OpticalFlowConfig, infer)
