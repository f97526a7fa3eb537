"""transformers ``PerceiverForOpticalFlow`` -> :class:`~perceiverio.tasks.flow.OpticalFlow`.

transformers hard-codes the flow architecture around its ``PerceiverConfig``: Linear(54 -> 64) after patching,
64 Fourier bands with ``max_resolution = config.train_size`` (so 322-channel tokens), a 1-head decoder without
query residual and ``rescale_factor = 100``. Its model takes the 3×3 patches ``[B, 2, 27, H, W]`` (our
:func:`~perceiverio.adapters.image.extract_patches_3x3` moved to channels-first) at exactly ``train_size`` and
returns ``[B, H, W, 2]`` *before* the demo's ×20; ours takes the frames and returns pixels ``[B, 2, H, W]``, i.e.
``ours == hf.permute(0, 3, 1, 2) * 20`` (pass ``output_scale=1`` to get transformers' scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..core.config import DecoderConfig
from ..tasks.flow import TRAIN_SIZE, OpticalFlow, OpticalFlowConfig
from .transformers import (
    KeyMap,
    StateDict,
    _decoder_from_state,
    _Head,
    _params,
    encoder_config_from_hf,
    encoder_config_from_state,
    map_cross_attention,
    map_encoder,
    register_head,
)

_PRE, _DEC = "perceiver.input_preprocessor", "perceiver.decoder.decoder"
_HF_PATCH_CHANNELS, _HF_BANDS = 64, 64  # fixed in transformers' PerceiverForOpticalFlow
_HF_QUERY_CHANNELS = _HF_PATCH_CHANNELS + 2 * (2 * _HF_BANDS + 1)  # 322


def _flow_config(hf: Mapping[str, Any]) -> OpticalFlowConfig:
    qk = _HF_QUERY_CHANNELS if hf["cross_attention_shape_for_attention"] == "q" else None
    decoder = DecoderConfig(num_query_channels=_HF_QUERY_CHANNELS, num_output_channels=2, num_heads=1,
                            qk_channels=qk, use_query_residual=False)
    return OpticalFlowConfig(train_size=tuple(hf.get("train_size") or TRAIN_SIZE),
                             num_patch_channels=_HF_PATCH_CHANNELS, num_bands=_HF_BANDS,
                             encoder=encoder_config_from_hf(hf), decoder=decoder)


def _flow_config_from_state(state: StateDict) -> OpticalFlowConfig:
    """Sizes from shapes; heads (cross 1, self 16), ``train_size`` (368×496) and 64 bands as released."""
    decoder = _decoder_from_state(state, f"{_DEC}.decoding_cross_attention", 1, False)
    patch = state[f"{_PRE}.conv_after_patches.weight"].shape[0]
    bands = (decoder.num_query_channels - patch - 2) // 4
    return OpticalFlowConfig(
        num_patch_channels=patch, num_bands=bands,
        encoder=encoder_config_from_state(state, num_cross_attention_heads=1, num_self_attention_heads=16),
        decoder=dataclasses.replace(decoder, num_output_channels=state[f"{_DEC}.final_layer.weight"].shape[0]))


def _flow_keys(config: OpticalFlowConfig) -> KeyMap:
    return (map_encoder(config.encoder.num_self_attends_per_block)
            | _params("input_adapter", _PRE, {"patches_linear": "conv_after_patches"})
            | map_cross_attention("decoder.cross_attention", f"{_DEC}.decoding_cross_attention")
            | _params("decoder", _DEC, {"projection": "final_layer"}))


register_head(OpticalFlow, _Head(
    "PerceiverForOpticalFlow", OpticalFlowConfig,
    ("perceiver.embeddings.latents", f"{_PRE}.conv_after_patches.weight", f"{_DEC}.final_layer.weight",
     f"{_DEC}.decoding_cross_attention.attention.self.query.weight",
     "perceiver.encoder.self_attends.0.attention.self.query.weight"),
    _flow_config, _flow_config_from_state, _flow_keys))
