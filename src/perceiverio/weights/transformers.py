"""Load Hugging Face ``transformers`` Perceiver checkpoints into our models: the generic part.

``Model.from_transformers(source)`` takes a transformers model object, its ``state_dict()``, a local folder written by
``save_pretrained`` (``config.json`` + ``model.safetensors``, a sharded ``model.safetensors.index.json`` or
``pytorch_model.bin``) or a Hugging Face Hub repository id such as ``"deepmind/language-perceiver"`` (fetched into
the Hub cache by :mod:`perceiverio.weights.hub`). transformers itself is not needed except to produce a model object.

This module holds what every head shares: the sources (:func:`read_source`), the key mappers
(:func:`map_cross_attention`, :func:`map_self_attention`, :func:`map_encoder`, returning ``{our parameter name:
transformers name}``), config reading (:func:`encoder_config_from_hf`, :func:`encoder_config_from_state`) and the
loading loop (:meth:`TransformersHead.load`). Each task model's :class:`TransformersHead` lives in the module of its
task (``weights/language.py``, ``image.py``, ...) and is named in ``weights/registry.py``.

The converted model reproduces transformers' outputs: exact GELU (``hidden_act``), ``masking="transformers"``
(additive ``finfo.min`` key mask, decoder query mask ignored) and LayerNorm eps 1e-5 (transformers ignores
``layer_norm_eps``). Pass ``masking="official"`` to get DeepMind's semantics instead; the two only differ on padded
inputs (padded MLM positions, fully padded examples).
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
from . import hub
from .build import assign_weights, empty_model
from .checkpoint import FORMAT

StateDict = Mapping[str, torch.Tensor]
KeyMap = dict[str, str]  # our parameter name -> transformers parameter name

HF_CONFIG_DEFAULTS: dict[str, Any] = {  # transformers' PerceiverConfig defaults (config.json may omit them)
    "num_latents": 256,
    "d_latents": 1280,
    "d_model": 768,
    "num_blocks": 1,
    "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8,
    "num_cross_attention_heads": 8,
    "qk_channels": None,
    "v_channels": None,
    "cross_attention_shape_for_attention": "kv",
    "self_attention_widening_factor": 1,
    "cross_attention_widening_factor": 1,
    "hidden_act": "gelu",
    "use_query_residual": True,
    "vocab_size": 262,
    "max_position_embeddings": 2048,
}
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
CLASSIFICATION_DECODER = "perceiver.decoder.decoder"  # PerceiverClassificationDecoder's inner decoder


# --------------------------------------------------------------------------- key mappers (shared by all heads)
def map_params(dst: str, src: str, names: Mapping[str, str], kinds: tuple[str, ...] = ("weight", "bias")) -> KeyMap:
    """``{dst.ours.kind: src.theirs.kind}`` for every ``ours: theirs`` of ``names`` and every ``kind``."""
    return {f"{dst}.{ours}.{k}": f"{src}.{theirs}.{k}" for ours, theirs in names.items() for k in kinds}


_ATTENTION_AND_MLP = {
    "attention.q_proj": "attention.self.query",
    "attention.k_proj": "attention.self.key",
    "attention.v_proj": "attention.self.value",
    "attention.o_proj": "attention.output.dense",
    "mlp_norm": "layernorm",
    "mlp.fc1": "mlp.dense1",
    "mlp.fc2": "mlp.dense2",
}


def map_cross_attention(dst: str, src: str) -> KeyMap:
    """Our :class:`CrossAttentionBlock` at ``dst`` <- a cross-attention ``PerceiverLayer`` at ``src``."""
    names = {"q_norm": "attention.self.layernorm1", "kv_norm": "attention.self.layernorm2", **_ATTENTION_AND_MLP}
    return map_params(dst, src, names)


def map_self_attention(dst: str, src: str) -> KeyMap:
    """Our :class:`SelfAttentionBlock` at ``dst`` <- a self-attention ``PerceiverLayer`` (no ``layernorm2``)."""
    return map_params(dst, src, {"norm": "attention.self.layernorm1", **_ATTENTION_AND_MLP})


def map_encoder(num_self_attends_per_block: int, dst: str = "encoder", src: str = "perceiver") -> KeyMap:
    """Our :class:`PerceiverEncoder` at ``dst`` <- ``{src}.embeddings.latents`` and ``{src}.encoder.*``."""
    keys = {f"{dst}.latents": f"{src}.embeddings.latents"}
    keys |= map_cross_attention(f"{dst}.cross_attention", f"{src}.encoder.cross_attention")
    for i in range(num_self_attends_per_block):
        keys |= map_self_attention(f"{dst}.self_attention.{i}", f"{src}.encoder.self_attends.{i}")
    return keys


def map_classification_decoder(src: str = CLASSIFICATION_DECODER) -> KeyMap:
    """Our decoder (+ final Linear) and learned query <- a ``PerceiverClassificationDecoder``."""
    return (
        {"output_queries.embeddings": f"{src}.output_position_encodings.position_embeddings"}
        | map_cross_attention("decoder.cross_attention", f"{src}.decoding_cross_attention")
        | map_params("decoder", src, {"projection": "final_layer"})
    )


# --------------------------------------------------------------------------- configs
def hf_activation(hidden_act: Any) -> str:
    """transformers ``hidden_act`` -> our ``activation`` (``"gelu"`` exact, ``"gelu_tanh"``)."""
    if hidden_act not in ACTIVATIONS:
        raise ValueError(f"unsupported transformers hidden_act {hidden_act!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[hidden_act]


def num_labels(hf: Mapping[str, Any]) -> int:
    """The label count of a transformers config dict (``config.json`` stores it as ``id2label``)."""
    id2label = hf.get("id2label")
    return len(id2label) if id2label else int(hf.get("num_labels", 2))


def encoder_config_from_hf(hf: Mapping[str, Any]) -> EncoderConfig:
    """:class:`EncoderConfig` of a transformers ``PerceiverConfig`` (as a dict with defaults filled in)."""
    qk, shape = hf["qk_channels"], hf["cross_attention_shape_for_attention"]
    if shape not in ("q", "kv"):
        raise ValueError(f"unknown cross_attention_shape_for_attention {shape!r} (expected 'q' or 'kv')")
    if qk is None and shape == "q":  # cross qk = latent width; self-attention's default is the same
        qk = hf["d_latents"]
    return EncoderConfig(
        num_latents=hf["num_latents"],
        num_latent_channels=hf["d_latents"],
        num_cross_attention_heads=hf["num_cross_attention_heads"],
        num_self_attention_heads=hf["num_self_attention_heads"],
        num_self_attends_per_block=hf["num_self_attends_per_block"],
        num_blocks=hf["num_blocks"],
        qk_channels=qk,
        v_channels=hf["v_channels"],
        cross_attention_widening_factor=hf["cross_attention_widening_factor"],
        self_attention_widening_factor=hf["self_attention_widening_factor"],
        use_query_residual=hf["use_query_residual"],
    )


def encoder_config_from_state(
    state: StateDict, src: str = "perceiver", num_cross_attention_heads: int = 8, num_self_attention_heads: int = 8
) -> EncoderConfig:
    """:class:`EncoderConfig` inferred from tensor shapes. Head counts, ``num_blocks`` (1) and
    ``use_query_residual`` (True) are not visible in shapes: the released models' values are used."""
    n, d = state[f"{src}.embeddings.latents"].shape
    ca, sa = f"{src}.encoder.cross_attention.attention.self", f"{src}.encoder.self_attends.0.attention.self"
    cross_qk, c = state[f"{ca}.key.weight"].shape
    self_qk, cross_v = state[f"{sa}.query.weight"].shape[0], state[f"{ca}.value.weight"].shape[0]
    prefix = f"{src}.encoder.self_attends."
    layers = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    if cross_qk == self_qk:
        qk = cross_qk
    elif cross_qk == c and self_qk == d:
        qk = None  # both default: cross qk = input width C, self qk = D
    else:
        raise ValueError(
            f"cross-attention qk ({cross_qk}) and self-attention qk ({self_qk}) differ in a way "
            "no PerceiverConfig produces"
        )
    return EncoderConfig(
        num_latents=n,
        num_latent_channels=d,
        num_cross_attention_heads=num_cross_attention_heads,
        num_self_attention_heads=num_self_attention_heads,
        num_self_attends_per_block=len(layers),
        qk_channels=qk,
        v_channels=d if cross_v == d else None,
        cross_attention_widening_factor=state[f"{src}.encoder.cross_attention.mlp.dense1.weight"].shape[0] // d,
        self_attention_widening_factor=state[f"{prefix}0.mlp.dense1.weight"].shape[0] // d,
    )


def decoder_config_from_state(state: StateDict, src: str, num_heads: int, use_query_residual: bool) -> DecoderConfig:
    """Decoder sizes from the shapes of the cross-attention at ``src``; qk/v left at their defaults (None) where
    the shapes equal the defaults."""
    att = f"{src}.attention.self"
    qk, e = state[f"{att}.query.weight"].shape
    d = state[f"{att}.key.weight"].shape[1]
    v = state[f"{att}.value.weight"].shape[0]
    return DecoderConfig(
        num_query_channels=e,
        num_heads=num_heads,
        qk_channels=None if qk == d else qk,
        v_channels=None if v == qk else v,
        use_query_residual=use_query_residual,
        widening_factor=state[f"{src}.mlp.dense1.weight"].shape[0] // e,
    )


# --------------------------------------------------------------------------- sources
def check_hf_config(raw: Any, where: str = "the checkpoint") -> None:
    """ValueError unless ``raw`` (a parsed ``config.json``) is a transformers Perceiver config."""
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT:
        raise ValueError(
            f"{where} is a perceiverio checkpoint, not a transformers one: load it with Model.from_pretrained"
        )
    if not isinstance(raw, Mapping) or raw.get("model_type", "perceiver") != "perceiver":
        kind = raw.get("model_type") if isinstance(raw, Mapping) else type(raw).__name__
        raise ValueError(f"{where} is not a Perceiver: its config has model_type {kind!r}")


def _hf_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A transformers config dict with PerceiverConfig's defaults filled in."""
    check_hf_config(raw)
    return {**HF_CONFIG_DEFAULTS, **raw}


def _folder(source: str | Path, revision: str | None, token: str | bool | None) -> Path:
    if hub.is_repo_id(source):
        return hub.download_checkpoint(
            str(source), revision, token=token, check_config=lambda raw: check_hf_config(raw, str(source))
        )
    if revision is not None:
        raise ValueError(f"revision= applies to Hugging Face Hub repositories; {source} is a local path")
    path = Path(source)
    if not path.is_dir():
        raise ValueError(f"{path} is not a checkpoint folder (a directory with config.json and weights)")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: expected a folder written by transformers' save_pretrained")
    return path


def read_config(source: str | Path, revision: str | None = None, token: str | bool | None = None) -> dict[str, Any]:
    """The raw ``config.json`` of a transformers checkpoint folder or Hub repository (for a repository, only the
    config is fetched)."""
    if hub.is_repo_id(source):
        path = hub.download_checkpoint(
            str(source), revision, weights=(), token=token, check_config=lambda raw: check_hf_config(raw, str(source))
        )
    else:
        path = _folder(source, revision, token)
    raw = json.loads((path / "config.json").read_text())
    check_hf_config(raw, str(source))
    return raw


def _read_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    hf = json.loads((path / "config.json").read_text())
    check_hf_config(hf, str(path))
    from safetensors.torch import load_file

    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors"), hf
    index = path / hub.SAFETENSORS_INDEX
    if index.is_file():
        shards = hub.index_shards(index)
        missing = [shard for shard in shards if not (path / shard).is_file()]
        if missing:
            raise ValueError(f"{index} names shards that are not in {path}: {', '.join(missing)}")
        return {k: v for shard in shards for k, v in load_file(path / shard).items()}, hf
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True), hf
    raise ValueError(
        f"{path} has config.json but no model.safetensors, model.safetensors.index.json or "
        f"pytorch_model.bin (found: {sorted(p.name for p in path.iterdir())})"
    )


@dataclasses.dataclass(frozen=True)
class Source:
    """A read checkpoint: its tensors, its raw transformers config (None for a bare state dict), and whether the
    tensors are still someone else's (a live model's or a caller's dict: copied on loading)."""

    state: dict[str, torch.Tensor]
    hf_config: dict[str, Any] | None
    borrowed: bool


def read_source(source: Any, revision: str | None = None, token: str | bool | None = None) -> Source:
    """A transformers model, its state dict, a local folder, a Hub repository id (or an already read
    :class:`Source`)."""
    if isinstance(source, Source):
        return source
    if isinstance(source, (str, Path)):
        return Source(*_read_folder(_folder(source, revision, token)), borrowed=False)
    if revision is not None:
        raise ValueError("revision= applies to Hugging Face Hub repositories, not to a model or a state dict")
    if hasattr(source, "state_dict") and hasattr(source, "config"):  # a transformers model (duck-typed)
        if not hasattr(source.config, "to_dict"):
            raise ValueError(f"{type(source).__name__} is not a transformers model (its config has no to_dict)")
        return Source(dict(source.state_dict()), source.config.to_dict(), borrowed=True)
    if isinstance(source, Mapping):
        bad = next(
            ((k, v) for k, v in source.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None
        )
        if bad is not None:
            raise ValueError(
                f"source is a state dict whose entry {bad[0]!r} is a {type(bad[1]).__name__}: every entry must map "
                "a parameter name to a tensor"
            )
        return Source(dict(source), None, borrowed=True)
    raise ValueError(
        "source must be a transformers Perceiver model, its state_dict(), a checkpoint folder path or "
        f"a Hugging Face Hub repository id, got {type(source).__name__}"
    )


# --------------------------------------------------------------------------- heads and the loading loop
@dataclasses.dataclass(frozen=True)
class TransformersHead:
    """How one model class loads from a transformers head.

    ``name``: the transformers class (for messages); ``architectures``: the transformers class names whose
    ``config.json`` this head reads; ``required``: keys that identify the head (checked before sizes are inferred);
    ``from_hf(hf_config) -> config`` and ``from_state(state) -> config``: our config from a transformers config dict
    (defaults filled in) or from the tensor shapes alone; ``key_map(config) -> {ours: theirs}``.
    """

    name: str
    architectures: tuple[str, ...]
    config_class: type
    required: tuple[str, ...]
    from_hf: Callable[[Mapping[str, Any]], Any]
    from_state: Callable[[StateDict], Any]
    key_map: Callable[[Any], KeyMap]

    def check_keys(
        self, expected: Iterable[str], state: StateDict, hf: Mapping[str, Any] | None, unexpected_too: bool = True
    ) -> None:
        """ValueError naming this head and a few missing (and unexpected) keys."""
        expected = list(expected)
        missing = [k for k in expected if k not in state]
        unexpected = sorted(set(state) - set(expected)) if unexpected_too else []
        if missing or unexpected:
            arch = (
                f" (its config names architectures={hf.get('architectures')})" if hf and hf.get("architectures") else ""
            )
            extra = f"; {len(unexpected)} unexpected keys, e.g. {unexpected[:4]}" if unexpected else ""
            sized = " with the sizes of the given config" if hf else ""
            raise ValueError(
                f"the weights are not a transformers {self.name} checkpoint{sized}{arch}: "
                f"{len(missing)} missing keys, e.g. {missing[:4]}{extra}"
            )

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
        """Build ``cls`` from a transformers checkpoint of this head (what ``Model.from_transformers`` runs).

        ``config``: our config (used as is, apart from ``activation``/``masking``), or a transformers
        ``PerceiverConfig`` / its dict; default: read from the model or folder, or inferred from a bare state dict.
        The result uses transformers' numerics (``activation`` from ``hidden_act``, ``masking="transformers"``);
        ``overrides`` then replace config fields. Returned in eval mode, built on the meta device and given the
        checkpoint's tensors without initialisation. Raises ValueError on a wrong head, missing/unexpected keys or
        mismatched shapes.
        """
        read = read_source(source, revision, token)
        state, hf_raw = read.state, read.hf_config
        if config is not None and not isinstance(config, self.config_class):
            if not (isinstance(config, Mapping) or hasattr(config, "to_dict")):
                raise ValueError(
                    f"config must be a {self.config_class.__name__} or a transformers PerceiverConfig, "
                    f"got {type(config).__name__}"
                )
            hf_raw, config = (dict(config) if isinstance(config, Mapping) else config.to_dict()), None
        hf = _hf_dict(hf_raw) if hf_raw is not None else None
        self.check_keys(self.required, state, hf, unexpected_too=False)
        try:
            if config is None and hf is not None:
                config = self.from_hf(hf)
            elif config is None:
                config = self.from_state(state)
            activation = hf_activation(hf["hidden_act"]) if hf is not None else "gelu"
            config = dataclasses.replace(config, **{"activation": activation, "masking": "transformers", **overrides})
        except KeyError as e:
            raise ValueError(f"the weights are not a transformers {self.name} checkpoint: missing key {e}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as e:
            what = "the transformers config" if hf is not None else "the state dict's shapes"
            raise ValueError(f"{what} does not give a valid {self.config_class.__name__}: {e}") from None

        key_map = self.key_map(config)  # ours -> transformers' names, from the config alone
        self.check_keys(key_map.values(), state, hf)  # missing and unexpected keys, before anything is built
        try:
            model = empty_model(cls, config)  # on the meta device: sizes only
        except (TypeError, ValueError, OverflowError, RuntimeError) as e:
            raise ValueError(f"the config's sizes do not build a {cls.__name__}: {str(e).splitlines()[0]}") from None
        ours = model.state_dict()
        if set(key_map) != set(ours):  # every parameter of ours must come from the checkpoint
            raise RuntimeError(
                f"internal: key mapping does not cover the model: {sorted(set(key_map) ^ set(ours))[:6]}"
            )
        bad = [
            f"{src} {tuple(state[src].shape)} -> {dst} {tuple(ours[dst].shape)}"
            for dst, src in key_map.items()
            if tuple(state[src].shape) != tuple(ours[dst].shape)
        ]
        if bad:
            raise ValueError(
                f"{len(bad)} weights of the {self.name} checkpoint do not fit the config "
                f"(transformers shape -> ours): {bad[:4]}"
            )
        return assign_weights(model, {dst: state[src] for dst, src in key_map.items()}, copy=read.borrowed).eval()
