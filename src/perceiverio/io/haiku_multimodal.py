"""DeepMind's Haiku multimodal autoencoder (``colabs/video_autoencoding.ipynb``) ->
:class:`~perceiverio.tasks.multimodal.MultimodalAutoencoder`. Imported automatically by :mod:`perceiverio.io.haiku`.

Official module names (modality ``<m>`` = our modality name; the official code uses ``audio``/``image``/``label``):

* ``multimodal_preprocessor/<m>_padding/pos_embs`` [1, P] and ``multimodal_preprocessor/<m>_mask_token/pos_embs``
  [1, C] -> ``input_adapter.padding.<m>`` / ``input_adapter.mask_tokens.<m>``;
* ``encoder/~/...`` (or ``perceiver_encoder``) -> ``encoder``;
* ``multimodal_decoder/~decoder_query/<m>_padding/pos_embs`` -> ``output_queries.padding.<m>``;
* ``multimodal_decoder/~/basic_decoder/{cross_attention,output}`` -> ``decoder`` (the shared decoder);
* ``classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs`` -> the label query;
* ``projection_postprocessor/linear``, ``audio_postprocessor/linear``, ``classification_postprocessor/linear`` ->
  ``output_adapter.<m>.linear``; ``image_preprocessor/patches_linear`` when ``conv_after_patching``.

Per-kind modules (postprocessors, the label's decoder) are named by type, not by modality; with several modalities
of one kind, Haiku's ``_1``, ``_2`` suffixes are assumed to follow sorted modality names.
Without a config, :meth:`MultimodalAutoencoderConfig.kinetics` is assumed (the released checkpoint).
"""

from __future__ import annotations

from ..adapters.image import ImageAdapterConfig
from ..tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from .haiku import HaikuParams, StateDict, _n, basic_decoder, encoder, linear, put, register

_PER_KIND = {  # kind -> (postprocessor module, input preprocessor module)
    "image": ("projection_postprocessor", "image_preprocessor"),
    "audio": ("audio_postprocessor", "audio_preprocessor"),
    "label": ("classification_postprocessor", "one_hot_preprocessor"),
}


def infer_config(hp: HaikuParams, config_cls: type) -> MultimodalAutoencoderConfig:
    """The released Kinetics configuration (no array reveals clip length, video size or head counts)."""
    return config_cls.kinetics()


def convert(hp: HaikuParams, model: MultimodalAutoencoder) -> StateDict:
    out: StateDict = {}
    config = model.config
    masked = dict(config.mask_probs)
    seen: dict[str, int] = {}
    for name, kind in config.kinds.items():  # sorted names
        i = seen[kind] = seen.get(kind, -1) + 1
        put(hp, f"multimodal_preprocessor/{name}_padding/pos_embs", f"input_adapter.padding.{name}", out)
        if name in masked:
            put(hp, f"multimodal_preprocessor/{name}_mask_token/pos_embs", f"input_adapter.mask_tokens.{name}", out)
        put(hp, f"multimodal_decoder/~decoder_query/{name}_padding/pos_embs", f"output_queries.padding.{name}", out)
        post, pre = _PER_KIND[kind]
        linear(hp, f"{_n(post, i)}/linear", f"output_adapter.{name}.linear", out)
        if kind == "label":
            put(hp, f"{_n('classification_decoder', i)}/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                f"output_queries.builders.{name}.embeddings", out)
        cfg = config.modality_configs[name]
        if isinstance(cfg, ImageAdapterConfig) and cfg.conv_after_patching:
            linear(hp, f"{_n(pre, i)}/patches_linear", f"input_adapter.adapters.{name}.patches_linear", out)
    encoder(hp, hp.prefix(("encoder", "perceiver_encoder")), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, "multimodal_decoder/~/basic_decoder", "decoder", out, model.decoder.projection is not None)
    return out


register(MultimodalAutoencoder, MultimodalAutoencoderConfig, infer_config, convert)
