"""Haiku conversion of the official optical-flow model (``colabs/optical_flow.ipynb``).

Official names: ``image_preprocessor/patches_linear`` (Linear 54 -> 64), ``perceiver_encoder/~/...``,
``flow_decoder/~/basic_decoder/cross_attention`` and ``flow_decoder/~/basic_decoder/output`` (Linear -> 2). The
Fourier encodings have no parameters; ``train_size`` (their ``max_resolution``) and the head counts are not visible
in the arrays and come from the config (default: the released model's, 368×496, 16 self-attention heads).
"""

from __future__ import annotations

from typing import Any

from ..tasks.flow import OpticalFlow, OpticalFlowConfig
from .haiku import (
    ENCODER_PREFIXES,
    HaikuParams,
    StateDict,
    basic_decoder,
    encoder,
    infer_decoder_config,
    infer_encoder_config,
    linear,
    register,
)

PATCHES = "image_preprocessor/patches_linear"
DECODER = "flow_decoder/~/basic_decoder"


def infer_flow(hp: HaikuParams, config_cls: type) -> Any:
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


def convert_flow(hp: HaikuParams, model: OpticalFlow) -> StateDict:
    out: StateDict = {}
    linear(hp, PATCHES, "input_adapter.patches_linear", out)
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, DECODER, "decoder", out, final_project=True)
    return out


register(OpticalFlow, OpticalFlowConfig, infer_flow, convert_flow)
