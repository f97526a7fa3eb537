"""Converters of the byte-level language models: :class:`MaskedLanguageModel` and :class:`SequenceClassifier`.

transformers: ``PerceiverForMaskedLM`` and ``PerceiverForSequenceClassification`` (the released
``deepmind/language-perceiver`` is the MLM). Unlike transformers, our MLM returns one logit row per input position
rather than ``max_position_embeddings`` rows; the rows it returns are identical. A bare state dict does not show head
counts, ``num_blocks`` or the query residual; the released values are used (encoder 8/8 heads, MLM decoder 8,
classifier decoder 1, ``num_blocks=1``).

Haiku: the released ``language_perceiver_io_bytes.pickle`` (``embed``, ``trainable_position_encoding``,
``perceiver_encoder``, ``basic_decoder``, ``embedding_decoder``) and the classifier's ``classification_decoder``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..core.config import DecoderConfig
from ..tasks.language import MaskedLanguageModelConfig, SequenceClassifierConfig
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
    map_classification_decoder,
    map_cross_attention,
    map_encoder,
    num_labels,
)

MLM_DECODER = "perceiver.decoder"
MLM_DECODER_HEADS, MLM_DECODER_QK = 8, 8 * 32  # fixed in transformers' PerceiverForMaskedLM
ENCODER_KEYS = (
    "perceiver.embeddings.latents",
    "perceiver.input_preprocessor.embeddings.weight",
    "perceiver.encoder.cross_attention.attention.self.query.weight",
    "perceiver.encoder.self_attends.0.attention.self.query.weight",
)


# ------------------------------------------------------------------------------------------------- transformers
def map_text_input(dst: str = "input_adapter", src: str = "perceiver.input_preprocessor") -> KeyMap:
    """Our :class:`TextInputAdapter` <- ``PerceiverTextPreprocessor``."""
    return {
        f"{dst}.token_embedding.weight": f"{src}.embeddings.weight",
        f"{dst}.position_embedding.embeddings": f"{src}.position_embeddings.weight",
    }


def text_fields_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    return dict(
        vocab_size=hf["vocab_size"],
        max_seq_len=hf["max_position_embeddings"],
        num_input_channels=hf["d_model"],
        encoder=encoder_config_from_hf(hf),
    )


def text_fields_from_state(state: StateDict) -> dict[str, Any]:
    vocab, c = state["perceiver.input_preprocessor.embeddings.weight"].shape
    return dict(
        vocab_size=vocab,
        num_input_channels=c,
        encoder=encoder_config_from_state(state),
        max_seq_len=state["perceiver.input_preprocessor.position_embeddings.weight"].shape[0],
    )


def mlm_config_from_hf(hf: Mapping[str, Any]) -> MaskedLanguageModelConfig:
    decoder = DecoderConfig(
        num_query_channels=hf["d_model"],
        num_heads=MLM_DECODER_HEADS,
        qk_channels=MLM_DECODER_QK,
        v_channels=hf["d_model"],
        use_query_residual=False,
    )
    return MaskedLanguageModelConfig(**text_fields_from_hf(hf), decoder=decoder)


def mlm_config_from_state(state: StateDict) -> MaskedLanguageModelConfig:
    decoder = decoder_config_from_state(state, f"{MLM_DECODER}.decoding_cross_attention", MLM_DECODER_HEADS, False)
    return MaskedLanguageModelConfig(**text_fields_from_state(state), decoder=decoder)


def mlm_keys(config: MaskedLanguageModelConfig) -> KeyMap:
    return (
        map_text_input()
        | map_encoder(config.encoder.num_self_attends_per_block)
        | {
            "output_queries.embeddings": f"{MLM_DECODER}.output_position_encodings.position_embeddings",
            "output_adapter.bias": "embedding_decoder.bias",
        }
        | map_cross_attention("decoder.cross_attention", f"{MLM_DECODER}.decoding_cross_attention")
    )


def classifier_config_from_hf(hf: Mapping[str, Any]) -> SequenceClassifierConfig:
    decoder = DecoderConfig(num_query_channels=hf["d_latents"], num_heads=1, use_query_residual=True)
    return SequenceClassifierConfig(**text_fields_from_hf(hf), num_classes=num_labels(hf), decoder=decoder)


def classifier_config_from_state(state: StateDict) -> SequenceClassifierConfig:
    decoder = decoder_config_from_state(state, f"{CLASSIFICATION_DECODER}.decoding_cross_attention", 1, True)
    return SequenceClassifierConfig(
        **text_fields_from_state(state),
        decoder=decoder,
        num_classes=state[f"{CLASSIFICATION_DECODER}.final_layer.weight"].shape[0],
    )


def classifier_keys(config: SequenceClassifierConfig) -> KeyMap:
    return map_text_input() | map_encoder(config.encoder.num_self_attends_per_block) | map_classification_decoder()


MLM_TRANSFORMERS = TransformersHead(
    "PerceiverForMaskedLM",
    ("PerceiverForMaskedLM",),
    MaskedLanguageModelConfig,
    ENCODER_KEYS + ("embedding_decoder.bias", f"{MLM_DECODER}.decoding_cross_attention.attention.self.query.weight"),
    mlm_config_from_hf,
    mlm_config_from_state,
    mlm_keys,
)
CLASSIFIER_TRANSFORMERS = TransformersHead(
    "PerceiverForSequenceClassification",
    ("PerceiverForSequenceClassification",),
    SequenceClassifierConfig,
    ENCODER_KEYS + (f"{CLASSIFICATION_DECODER}.final_layer.weight",),
    classifier_config_from_hf,
    classifier_config_from_state,
    classifier_keys,
)


# ------------------------------------------------------------------------------------------------- Haiku
def _infer_text(hp: HaikuParams, config_cls: type, dec_prefixes: tuple[str, ...]) -> tuple[dict, Any]:
    default = config_cls()  # released heads: encoder 8/8; MLM decoder 8, no query residual
    vocab, c = hp.shape("embed/embeddings")
    fields = dict(
        vocab_size=vocab,
        max_seq_len=hp.shape("trainable_position_encoding/pos_embs")[0],
        num_input_channels=c,
        encoder=infer_encoder_config(hp, hp.prefix(ENCODER_PREFIXES), c, default.encoder),
    )
    return fields, infer_decoder_config(hp, hp.prefix(dec_prefixes), default.decoder)


def infer_mlm(hp: HaikuParams, config_cls: type) -> Any:
    fields, dec = _infer_text(hp, config_cls, ("basic_decoder",))
    return config_cls(**fields, decoder=dec)


def infer_classifier(hp: HaikuParams, config_cls: type) -> Any:
    fields, dec = _infer_text(hp, config_cls, CLASSIFIER_DECODER_PREFIXES)
    if dec.num_output_channels is None:
        raise ValueError("the classification decoder has no 'output' Linear")
    return config_cls(
        **fields, num_classes=dec.num_output_channels, decoder=dataclasses.replace(dec, num_output_channels=None)
    )


def _convert_text(hp: HaikuParams, model: nn.Module, dec: str) -> Converted:
    out: Converted = {}
    put(hp, "embed/embeddings", "input_adapter.token_embedding.weight", out)
    put(hp, "trainable_position_encoding/pos_embs", "input_adapter.position_embedding.embeddings", out)
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, dec, "decoder", out, model.decoder.projection is not None, queries="output_queries")
    return out


def convert_mlm(hp: HaikuParams, model: nn.Module) -> Converted:
    out = _convert_text(hp, model, "basic_decoder")
    put(hp, "embedding_decoder/bias", "output_adapter.bias", out)
    return out


def convert_classifier(hp: HaikuParams, model: nn.Module) -> Converted:
    return _convert_text(hp, model, hp.prefix(CLASSIFIER_DECODER_PREFIXES))


MLM_HAIKU = HaikuConverter(convert_mlm, MaskedLanguageModelConfig, infer_mlm)
CLASSIFIER_HAIKU = HaikuConverter(convert_classifier, SequenceClassifierConfig, infer_classifier)
