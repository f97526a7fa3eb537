"""Converters of :class:`~perceiverio.tasks.multimodal.MultimodalAutoencoder` (``colabs/video_autoencoding.ipynb``).

**transformers** ``PerceiverForMultimodalAutoencoding`` (``deepmind/multimodal-perceiver``) hard-codes the modality
names ``audio``, ``image`` and ``label``; our modalities are matched to them by kind, so a config may name them freely
(exactly one audio, one image and one label modality). Its architecture, read from its ``PerceiverConfig``: audio of
``num_frames · audio_samples_per_frame`` samples in ``samples_per_patch`` patches with 192 Fourier bands
(``max_resolution`` = the sample count); video of ``output_shape[1:4]`` = (T, H, W) in 1×4×4 patches with 32 bands,
``max_resolution = (num_frames, image_size, image_size)``; a one-hot label of ``num_labels`` classes with a learned
``_label_trainable_num_channels`` query; input padding 4, query padding 2; masking probabilities 0 / 0 / 1, applied in
eval mode too (as transformers does). transformers requires explicit ``subsampled_output_points`` for audio and
image; ours does not.

**Haiku** module names (modality ``<m>`` = our modality name; the official code uses ``audio``/``image``/``label``):

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

from collections.abc import Mapping
from typing import Any

from ..adapters.audio import AudioAdapterConfig
from ..adapters.image import ImageAdapterConfig
from ..adapters.label import LabelAdapterConfig
from ..core.config import DecoderConfig
from ..tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from .haiku import Converted, HaikuConverter, HaikuParams, basic_decoder, encoder, haiku_name, linear, put
from .transformers import (
    HF_CONFIG_DEFAULTS,
    KeyMap,
    StateDict,
    TransformersHead,
    encoder_config_from_hf,
    encoder_config_from_state,
    map_cross_attention,
    map_encoder,
    map_params,
    num_labels,
)

# ------------------------------------------------------------------------------------------------- transformers
MULTIMODAL_DEFAULTS: dict[str, Any] = {  # PerceiverConfig defaults of the multimodal fields
    "num_frames": 16,
    "audio_samples_per_frame": 1920,
    "samples_per_patch": 16,
    "image_size": 56,
    "output_shape": [1, 16, 224, 224],
    "output_num_channels": 512,
    "_label_trainable_num_channels": 1024,
}
PRE, DEC, POST = "perceiver.input_preprocessor", "perceiver.decoder", "perceiver.output_postprocessor.modalities"
HF_NAMES = ("audio", "image", "label")  # transformers' fixed names, one per kind


def config_from_hf(hf: Mapping[str, Any]) -> MultimodalAutoencoderConfig:
    """Our config of a transformers ``PerceiverConfig`` dict (defaults filled in)."""
    hf = {**MULTIMODAL_DEFAULTS, **hf}
    size = hf["image_size"]
    ih, iw = (size, size) if isinstance(size, int) else tuple(size)
    frames, spp = hf["num_frames"], hf["samples_per_patch"]
    n_samples = frames * hf["audio_samples_per_frame"]
    shape = tuple(int(n) for n in hf["output_shape"])
    if len(shape) != 4:
        raise ValueError(f"transformers output_shape must be (batch, T, H, W), got {shape}")
    modalities = {
        "audio": AudioAdapterConfig(
            num_samples=n_samples, samples_per_patch=spp, num_bands=192, max_resolution=n_samples
        ),
        "image": ImageAdapterConfig(
            image_shape=shape[1:],
            prep_type="patches",
            spatial_downsample=4,
            temporal_downsample=1,
            num_bands=32,
            max_resolution=(frames, ih, iw),
        ),
        "label": LabelAdapterConfig(num_classes=num_labels(hf), num_query_channels=hf["_label_trainable_num_channels"]),
    }
    base = MultimodalAutoencoderConfig(
        modalities=modalities, min_padding_size=4, query_padding_size=2, encoder=encoder_config_from_hf(hf)
    )
    e = base.num_query_channels
    decoder = DecoderConfig(
        num_query_channels=e,
        num_output_channels=hf["output_num_channels"],
        num_heads=1,
        qk_channels=e if hf["cross_attention_shape_for_attention"] == "q" else None,
        use_query_residual=False,
    )
    return MultimodalAutoencoderConfig(
        modalities=modalities,
        encoder=base.encoder,
        decoder=decoder,
        min_padding_size=4,
        query_padding_size=2,
        mask_probs={"audio": 0.0, "image": 0.0, "label": 1.0},
        apply_mask_in_eval=True,
    )


def config_from_state(state: StateDict) -> MultimodalAutoencoderConfig:
    """Sizes visible in the shapes (classes, label query width, samples per patch, output width); the rest (clip
    length, video size, head counts: cross 1, self 8) are the released Kinetics model's."""
    label = state[f"{POST}.label.classifier.weight"]
    hf = {
        **HF_CONFIG_DEFAULTS,
        "num_labels": label.shape[0],
        "output_num_channels": label.shape[1],
        "samples_per_patch": state[f"{POST}.audio.classifier.weight"].shape[0],
        "_label_trainable_num_channels": state[
            f"{DEC}.modalities.label.decoder.output_position_encodings.position_embeddings"
        ].shape[1],
    }
    config = config_from_hf(hf)
    encoder_config = encoder_config_from_state(state, num_cross_attention_heads=1, num_self_attention_heads=8)
    return MultimodalAutoencoderConfig(**{**_fields(config), "encoder": encoder_config})


def _fields(config: MultimodalAutoencoderConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def hf_names(config: MultimodalAutoencoderConfig) -> dict[str, str]:
    """``{our modality name: transformers name}`` (matched by kind)."""
    by_kind: dict[str, list[str]] = {}
    for name, kind in config.kinds.items():
        by_kind.setdefault(kind, []).append(name)
    if sorted(by_kind) != sorted(HF_NAMES) or any(len(v) != 1 for v in by_kind.values()):
        raise ValueError(
            "transformers' PerceiverForMultimodalAutoencoding has exactly one audio, one image and one "
            f"label modality; this config has {config.kinds}"
        )
    return {names[0]: kind for kind, names in by_kind.items()}


def key_map(config: MultimodalAutoencoderConfig) -> KeyMap:
    names = hf_names(config)
    keys = map_encoder(config.encoder.num_self_attends_per_block)
    keys |= map_cross_attention("decoder.cross_attention", f"{DEC}.decoder.decoding_cross_attention")
    if config.decoder.num_output_channels is not None:
        keys |= map_params("decoder", f"{DEC}.decoder", {"projection": "final_layer"})
    masked = dict(config.mask_probs)
    for ours, theirs in names.items():
        keys[f"input_adapter.padding.{ours}"] = f"{PRE}.padding.{theirs}"
        if ours in masked:
            keys[f"input_adapter.mask_tokens.{ours}"] = f"{PRE}.mask.{theirs}"
        keys[f"output_queries.padding.{ours}"] = f"{DEC}.padding.{theirs}"
        keys |= map_params(f"output_adapter.{ours}", f"{POST}.{theirs}", {"linear": "classifier"})
        if theirs == "label":
            keys[f"output_queries.builders.{ours}.embeddings"] = (
                f"{DEC}.modalities.label.decoder.output_position_encodings.position_embeddings"
            )
    return keys


TRANSFORMERS = TransformersHead(
    "PerceiverForMultimodalAutoencoding",
    ("PerceiverForMultimodalAutoencoding",),
    MultimodalAutoencoderConfig,
    (
        "perceiver.embeddings.latents",
        f"{PRE}.padding.audio",
        f"{PRE}.padding.image",
        f"{PRE}.padding.label",
        f"{DEC}.decoder.decoding_cross_attention.attention.self.query.weight",
        f"{POST}.label.classifier.weight",
        f"{POST}.audio.classifier.weight",
    ),
    config_from_hf,
    config_from_state,
    key_map,
)


# ------------------------------------------------------------------------------------------------- Haiku
PER_KIND = {  # kind -> (postprocessor module, input preprocessor module)
    "image": ("projection_postprocessor", "image_preprocessor"),
    "audio": ("audio_postprocessor", "audio_preprocessor"),
    "label": ("classification_postprocessor", "one_hot_preprocessor"),
}


def infer(hp: HaikuParams, config_cls: type) -> MultimodalAutoencoderConfig:
    """The released Kinetics configuration (no array reveals clip length, video size or head counts)."""
    return config_cls.kinetics()


def convert(hp: HaikuParams, model: MultimodalAutoencoder) -> Converted:
    out: Converted = {}
    config = model.config
    masked = dict(config.mask_probs)
    seen: dict[str, int] = {}
    for name, kind in config.kinds.items():  # sorted names
        i = seen[kind] = seen.get(kind, -1) + 1
        put(hp, f"multimodal_preprocessor/{name}_padding/pos_embs", f"input_adapter.padding.{name}", out)
        if name in masked:
            put(hp, f"multimodal_preprocessor/{name}_mask_token/pos_embs", f"input_adapter.mask_tokens.{name}", out)
        put(hp, f"multimodal_decoder/~decoder_query/{name}_padding/pos_embs", f"output_queries.padding.{name}", out)
        post, pre = PER_KIND[kind]
        linear(hp, f"{haiku_name(post, i)}/linear", f"output_adapter.{name}.linear", out)
        if kind == "label":
            put(
                hp,
                f"{haiku_name('classification_decoder', i)}/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                f"output_queries.builders.{name}.embeddings",
                out,
            )
        cfg = config.modality_configs[name]
        if isinstance(cfg, ImageAdapterConfig) and cfg.conv_after_patching:
            linear(hp, f"{haiku_name(pre, i)}/patches_linear", f"input_adapter.adapters.{name}.patches_linear", out)
    encoder(hp, hp.prefix(("encoder", "perceiver_encoder")), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, "multimodal_decoder/~/basic_decoder", "decoder", out, model.decoder.projection is not None)
    return out


HAIKU = HaikuConverter(convert, MultimodalAutoencoderConfig, infer)
