"""Load Hugging Face ``transformers`` Perceiver checkpoints into our task models.

Supported heads: ``PerceiverForMaskedLM`` -> :class:`MaskedLanguageModel` and ``PerceiverForSequenceClassification``
-> :class:`SequenceClassifier`; call ``Model.from_transformers(source)``. ``source`` is a transformers model object,
its ``state_dict()``, or a local folder written by ``save_pretrained`` (``config.json`` + ``model.safetensors``,
a sharded ``model.safetensors.index.json`` or ``pytorch_model.bin``). transformers itself is not needed except to
produce a model object.

The converted model reproduces transformers' outputs: exact GELU (``hidden_act``), ``masking="transformers"``
(additive ``finfo.min`` key mask, decoder query mask ignored) and LayerNorm eps 1e-5 (transformers ignores
``layer_norm_eps``). Pass ``masking="official"`` to get DeepMind's semantics instead; the two only differ on padded
inputs (padded MLM positions, fully padded examples). Unlike transformers, the MLM returns one logit row per input
position rather than ``max_position_embeddings`` rows; the rows it returns are identical.

The key mappers (:func:`map_cross_attention`, :func:`map_self_attention`, :func:`map_encoder`) return
``{our parameter name: transformers name}`` and are shared by every head.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.config import DecoderConfig, EncoderConfig
from ..tasks.language import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)

StateDict = Mapping[str, torch.Tensor]
KeyMap = dict[str, str]  # our parameter name -> transformers parameter name

HF_CONFIG_DEFAULTS: dict[str, Any] = {  # transformers' PerceiverConfig defaults (config.json may omit them)
    "num_latents": 256, "d_latents": 1280, "d_model": 768, "num_blocks": 1, "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8, "num_cross_attention_heads": 8, "qk_channels": None, "v_channels": None,
    "cross_attention_shape_for_attention": "kv", "self_attention_widening_factor": 1,
    "cross_attention_widening_factor": 1, "hidden_act": "gelu", "use_query_residual": True, "vocab_size": 262,
    "max_position_embeddings": 2048,
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_MLM_DECODER_HEADS, _MLM_DECODER_QK = 8, 8 * 32  # fixed in transformers' PerceiverForMaskedLM


# --------------------------------------------------------------------------- key mappers (shared by all heads)
def _params(dst: str, src: str, names: Mapping[str, str], kinds: tuple[str, ...] = ("weight", "bias")) -> KeyMap:
    return {f"{dst}.{ours}.{k}": f"{src}.{theirs}.{k}" for ours, theirs in names.items() for k in kinds}


_ATTENTION_AND_MLP = {
    "attention.q_proj": "attention.self.query", "attention.k_proj": "attention.self.key",
    "attention.v_proj": "attention.self.value", "attention.o_proj": "attention.output.dense",
    "mlp_norm": "layernorm", "mlp.fc1": "mlp.dense1", "mlp.fc2": "mlp.dense2",
}


def map_cross_attention(dst: str, src: str) -> KeyMap:
    """Our :class:`CrossAttentionBlock` at ``dst`` <- a cross-attention ``PerceiverLayer`` at ``src``."""
    names = {"q_norm": "attention.self.layernorm1", "kv_norm": "attention.self.layernorm2", **_ATTENTION_AND_MLP}
    return _params(dst, src, names)


def map_self_attention(dst: str, src: str) -> KeyMap:
    """Our :class:`SelfAttentionBlock` at ``dst`` <- a self-attention ``PerceiverLayer`` (no ``layernorm2``)."""
    return _params(dst, src, {"norm": "attention.self.layernorm1", **_ATTENTION_AND_MLP})


def map_encoder(num_self_attends_per_block: int, dst: str = "encoder", src: str = "perceiver") -> KeyMap:
    """Our :class:`PerceiverEncoder` at ``dst`` <- ``{src}.embeddings.latents`` and ``{src}.encoder.*``."""
    keys = {f"{dst}.latents": f"{src}.embeddings.latents"}
    keys |= map_cross_attention(f"{dst}.cross_attention", f"{src}.encoder.cross_attention")
    for i in range(num_self_attends_per_block):
        keys |= map_self_attention(f"{dst}.self_attention.{i}", f"{src}.encoder.self_attends.{i}")
    return keys


def map_text_input(dst: str = "input_adapter", src: str = "perceiver.input_preprocessor") -> KeyMap:
    """Our :class:`TextInputAdapter` <- ``PerceiverTextPreprocessor``."""
    return {f"{dst}.token_embedding.weight": f"{src}.embeddings.weight",
            f"{dst}.position_embedding.embeddings": f"{src}.position_embeddings.weight"}


# --------------------------------------------------------------------------- configs
def hf_activation(hidden_act: Any) -> str:
    """transformers ``hidden_act`` -> our ``activation`` (``"gelu"`` exact, ``"gelu_tanh"``)."""
    if hidden_act not in _ACTIVATIONS:
        raise ValueError(f"unsupported transformers hidden_act {hidden_act!r}; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[hidden_act]


def encoder_config_from_hf(hf: Mapping[str, Any]) -> EncoderConfig:
    """:class:`EncoderConfig` of a transformers ``PerceiverConfig`` (as a dict with defaults filled in)."""
    qk, shape = hf["qk_channels"], hf["cross_attention_shape_for_attention"]
    if shape not in ("q", "kv"):
        raise ValueError(f"unknown cross_attention_shape_for_attention {shape!r} (expected 'q' or 'kv')")
    if qk is None and shape == "q":  # cross qk = latent width; self-attention's default is the same
        qk = hf["d_latents"]
    return EncoderConfig(
        num_latents=hf["num_latents"], num_latent_channels=hf["d_latents"],
        num_cross_attention_heads=hf["num_cross_attention_heads"],
        num_self_attention_heads=hf["num_self_attention_heads"],
        num_self_attends_per_block=hf["num_self_attends_per_block"], num_blocks=hf["num_blocks"],
        qk_channels=qk, v_channels=hf["v_channels"],
        cross_attention_widening_factor=hf["cross_attention_widening_factor"],
        self_attention_widening_factor=hf["self_attention_widening_factor"],
        use_query_residual=hf["use_query_residual"],
    )


def encoder_config_from_state(state: StateDict, src: str = "perceiver", num_cross_attention_heads: int = 8,
                              num_self_attention_heads: int = 8) -> EncoderConfig:
    """:class:`EncoderConfig` inferred from tensor shapes. Head counts, ``num_blocks`` (1) and
    ``use_query_residual`` (True) are not visible in shapes: the released models' values are used."""
    n, d = state[f"{src}.embeddings.latents"].shape
    ca, sa = f"{src}.encoder.cross_attention.attention.self", f"{src}.encoder.self_attends.0.attention.self"
    cross_qk, c = state[f"{ca}.key.weight"].shape
    self_qk, cross_v = state[f"{sa}.query.weight"].shape[0], state[f"{ca}.value.weight"].shape[0]
    prefix = f"{src}.encoder.self_attends."
    layers = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    if cross_qk == self_qk:
        qk = cross_qk
    elif cross_qk == c and self_qk == d:
        qk = None  # both default: cross qk = input width C, self qk = D
    else:
        raise ValueError(f"cross-attention qk ({cross_qk}) and self-attention qk ({self_qk}) differ in a way "
                         "no PerceiverConfig produces")
    return EncoderConfig(
        num_latents=n, num_latent_channels=d, num_cross_attention_heads=num_cross_attention_heads,
        num_self_attention_heads=num_self_attention_heads, num_self_attends_per_block=len(layers),
        qk_channels=qk, v_channels=d if cross_v == d else None,
        cross_attention_widening_factor=state[f"{src}.encoder.cross_attention.mlp.dense1.weight"].shape[0] // d,
        self_attention_widening_factor=state[f"{prefix}0.mlp.dense1.weight"].shape[0] // d,
    )


def _decoder_from_state(state: StateDict, src: str, num_heads: int, use_query_residual: bool) -> DecoderConfig:
    """Decoder sizes from shapes; qk/v left at their defaults (None) where the shapes equal the defaults."""
    att = f"{src}.attention.self"
    qk, e = state[f"{att}.query.weight"].shape
    d = state[f"{att}.key.weight"].shape[1]
    v = state[f"{att}.value.weight"].shape[0]
    return DecoderConfig(num_query_channels=e, num_heads=num_heads, qk_channels=None if qk == d else qk,
                         v_channels=None if v == qk else v, use_query_residual=use_query_residual,
                         widening_factor=state[f"{src}.mlp.dense1.weight"].shape[0] // e)


def _text_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
    return dict(vocab_size=hf["vocab_size"], max_seq_len=hf["max_position_embeddings"],
                num_input_channels=hf["d_model"], encoder=encoder_config_from_hf(hf))


def _text_fields_from_state(state: StateDict) -> dict[str, Any]:
    vocab, c = state["perceiver.input_preprocessor.embeddings.weight"].shape
    return dict(vocab_size=vocab, num_input_channels=c, encoder=encoder_config_from_state(state),
                max_seq_len=state["perceiver.input_preprocessor.position_embeddings.weight"].shape[0])


# --------------------------------------------------------------------------- heads
_MLM_DEC, _CLS_DEC = "perceiver.decoder", "perceiver.decoder.decoder"
_ENCODER_KEYS = ("perceiver.embeddings.latents", "perceiver.input_preprocessor.embeddings.weight",
                 "perceiver.encoder.cross_attention.attention.self.query.weight",
                 "perceiver.encoder.self_attends.0.attention.self.query.weight")


def _mlm_config(hf: Mapping[str, Any]) -> MaskedLanguageModelConfig:
    decoder = DecoderConfig(num_query_channels=hf["d_model"], num_heads=_MLM_DECODER_HEADS,
                            qk_channels=_MLM_DECODER_QK, v_channels=hf["d_model"], use_query_residual=False)
    return MaskedLanguageModelConfig(**_text_fields(hf), decoder=decoder)


def _mlm_config_from_state(state: StateDict) -> MaskedLanguageModelConfig:
    decoder = _decoder_from_state(state, f"{_MLM_DEC}.decoding_cross_attention", _MLM_DECODER_HEADS, False)
    return MaskedLanguageModelConfig(**_text_fields_from_state(state), decoder=decoder)


def _mlm_keys(config: MaskedLanguageModelConfig) -> KeyMap:
    return (map_text_input() | map_encoder(config.encoder.num_self_attends_per_block)
            | {"output_queries.embeddings": f"{_MLM_DEC}.output_position_encodings.position_embeddings",
               "output_adapter.bias": "embedding_decoder.bias"}
            | map_cross_attention("decoder.cross_attention", f"{_MLM_DEC}.decoding_cross_attention"))


def _classifier_config(hf: Mapping[str, Any]) -> SequenceClassifierConfig:
    id2label = hf.get("id2label")  # config.json stores the label count as id2label
    num_classes = len(id2label) if id2label else int(hf.get("num_labels", 2))
    decoder = DecoderConfig(num_query_channels=hf["d_latents"], num_heads=1, use_query_residual=True)
    return SequenceClassifierConfig(**_text_fields(hf), num_classes=num_classes, decoder=decoder)


def _classifier_config_from_state(state: StateDict) -> SequenceClassifierConfig:
    decoder = _decoder_from_state(state, f"{_CLS_DEC}.decoding_cross_attention", 1, True)
    return SequenceClassifierConfig(**_text_fields_from_state(state), decoder=decoder,
                                    num_classes=state[f"{_CLS_DEC}.final_layer.weight"].shape[0])


def _classifier_keys(config: SequenceClassifierConfig) -> KeyMap:
    return (map_text_input() | map_encoder(config.encoder.num_self_attends_per_block)
            | {"output_queries.embeddings": f"{_CLS_DEC}.output_position_encodings.position_embeddings"}
            | map_cross_attention("decoder.cross_attention", f"{_CLS_DEC}.decoding_cross_attention")
            | _params("decoder", _CLS_DEC, {"projection": "final_layer"}))


@dataclasses.dataclass(frozen=True)
class _Head:
    hf_class: str
    config_class: type
    required: tuple[str, ...]  # keys that identify the head (checked before sizes are inferred)
    from_hf: Callable[[Mapping[str, Any]], Any]
    from_state: Callable[[StateDict], Any]
    key_map: Callable[[Any], KeyMap]


_HEADS: dict[type, _Head] = {
    MaskedLanguageModel: _Head(
        "PerceiverForMaskedLM", MaskedLanguageModelConfig,
        _ENCODER_KEYS + ("embedding_decoder.bias", f"{_MLM_DEC}.decoding_cross_attention.attention.self.query.weight"),
        _mlm_config, _mlm_config_from_state, _mlm_keys),
    SequenceClassifier: _Head(
        "PerceiverForSequenceClassification", SequenceClassifierConfig,
        _ENCODER_KEYS + (f"{_CLS_DEC}.final_layer.weight",),
        _classifier_config, _classifier_config_from_state, _classifier_keys),
}


# modules of this package that register more heads when imported (e.g. transformers_image.py); absent ones skipped
EXTENSIONS = ("transformers_image", "transformers_flow", "transformers_multimodal")


def register_head(model_cls: type, head: _Head) -> None:
    """Add a head (called at import time by the modules named in :data:`EXTENSIONS`)."""
    _HEADS[model_cls] = head


def _load_extensions() -> None:
    import importlib
    import importlib.util

    for name in EXTENSIONS:
        if importlib.util.find_spec(f"{__package__}.{name}") is not None:
            importlib.import_module(f"{__package__}.{name}")


# --------------------------------------------------------------------------- sources
def _hf_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A transformers config dict with PerceiverConfig's defaults filled in."""
    if raw.get("model_type", "perceiver") != "perceiver":
        raise ValueError(f"not a Perceiver config: model_type is {raw.get('model_type')!r}")
    return {**HF_CONFIG_DEFAULTS, **raw}


def _read_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_dir():
        raise ValueError(f"{path} is not a checkpoint folder (a directory with config.json and weights)")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: expected a folder written by transformers' save_pretrained")
    hf = json.loads((path / "config.json").read_text())
    from safetensors.torch import load_file

    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors"), hf
    if (path / "model.safetensors.index.json").is_file():
        shards = sorted(set(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(path / shard).items()}, hf
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True), hf
    raise ValueError(f"{path} has config.json but no model.safetensors, model.safetensors.index.json or "
                     f"pytorch_model.bin (found: {sorted(p.name for p in path.iterdir())})")


def _read_source(source: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, raw transformers config dict or None)."""
    if isinstance(source, (str, Path)):
        return _read_folder(Path(source))
    if hasattr(source, "state_dict") and hasattr(source, "config"):  # a transformers model (duck-typed)
        if not hasattr(source.config, "to_dict"):
            raise ValueError(f"{type(source).__name__} is not a transformers model (its config has no to_dict)")
        return dict(source.state_dict()), source.config.to_dict()
    if isinstance(source, Mapping) and all(isinstance(v, torch.Tensor) for v in source.values()):
        return dict(source), None
    raise ValueError("source must be a transformers Perceiver model, its state_dict() or a checkpoint folder path, "
                     f"got {type(source).__name__}")


def _check_keys(expected: Iterable[str], state: StateDict, head: _Head, hf: Mapping[str, Any] | None,
                unexpected_too: bool = True) -> None:
    """ValueError naming the expected head and a few missing (and unexpected) keys."""
    expected = list(expected)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(set(state) - set(expected)) if unexpected_too else []
    if missing or unexpected:
        arch = f" (its config names architectures={hf.get('architectures')})" if hf and hf.get("architectures") else ""
        extra = f"; {len(unexpected)} unexpected keys, e.g. {unexpected[:4]}" if unexpected else ""
        raise ValueError(f"the weights are not a transformers {head.hf_class} checkpoint{arch}: "
                         f"{len(missing)} missing keys, e.g. {missing[:4]}{extra}")


def load_from_transformers(cls: type[nn.Module], source: Any, config: Any = None, **overrides: Any) -> nn.Module:
    """Build ``cls`` from a transformers Perceiver checkpoint (see the module docstring).

    ``config``: our task config (used as is, apart from ``activation``/``masking``), or a transformers
    ``PerceiverConfig`` / its dict; default: read from the model or folder, or inferred from a bare state dict
    (released head counts: encoder 8/8, MLM decoder 8, classifier 1; ``num_blocks=1``, query residual on).
    The result uses transformers' numerics (``activation`` from ``hidden_act``, ``masking="transformers"``);
    ``overrides`` then replace config fields, e.g. ``masking="official"``. Returned in eval mode (like
    ``from_pretrained``). Raises ValueError on a wrong head, missing/unexpected keys or mismatched shapes.
    """
    _load_extensions()
    head = next((h for k, h in _HEADS.items() if issubclass(cls, k)), None)
    if head is None:
        raise ValueError(f"{cls.__name__} cannot be loaded from transformers; supported: "
                         f"{[c.__name__ for c in _HEADS]}")
    state, hf_raw = _read_source(source)
    if config is not None and not isinstance(config, head.config_class):
        if not (isinstance(config, Mapping) or hasattr(config, "to_dict")):
            raise ValueError(f"config must be a {head.config_class.__name__} or a transformers PerceiverConfig, "
                             f"got {type(config).__name__}")
        hf_raw, config = (dict(config) if isinstance(config, Mapping) else config.to_dict()), None
    hf = _hf_dict(hf_raw) if hf_raw is not None else None
    _check_keys(head.required, state, head, hf, unexpected_too=False)
    if config is None and hf is not None:
        config = head.from_hf(hf)
    elif config is None:
        try:
            config = head.from_state(state)
        except KeyError as e:
            raise ValueError(f"the weights are not a transformers {head.hf_class} checkpoint: missing key {e}") from e
    activation = hf_activation(hf["hidden_act"]) if hf is not None else "gelu"
    config = dataclasses.replace(config, **{"activation": activation, "masking": "transformers", **overrides})

    model = cls(config)
    ours = model.state_dict()
    key_map = head.key_map(config)
    if set(key_map) != set(ours):  # every parameter of ours must come from the checkpoint
        raise RuntimeError(f"internal: key mapping does not cover the model: {sorted(set(key_map) ^ set(ours))[:6]}")
    _check_keys(key_map.values(), state, head, hf)
    bad = [f"{src} {tuple(state[src].shape)} -> {dst} {tuple(ours[dst].shape)}" for dst, src in key_map.items()
           if tuple(state[src].shape) != tuple(ours[dst].shape)]
    if bad:
        raise ValueError(f"{len(bad)} weights of the {head.hf_class} checkpoint do not fit the config "
                         f"(transformers shape -> ours): {bad[:4]}")
    model.load_state_dict({dst: state[src] for dst, src in key_map.items()}, strict=True)
    return model.eval()
