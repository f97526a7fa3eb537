"""Load DeepMind's Haiku parameters (the official Perceiver IO release) into our models: the generic part.

This module reads params (:func:`read_haiku`), maps the official building blocks and runs the loading loop
(:func:`load_from_haiku`, and its inverse :func:`export_haiku`); each task model's :class:`HaikuConverter` lives in
the module of its task (``weights/language.py``, ``image.py``, ...) and is named in ``weights/registry.py``.

Haiku names modules by creation order (see ``shared/golden/README.md``); the builders below map one official module
to our submodule, taking a Haiku prefix and a torch prefix, so every task's converter reuses them:

* ``Attention``: ``linear``/``linear_1``/``linear_2``/``linear_3`` -> ``q_proj``/``k_proj``/``v_proj``/``o_proj``.
* ``MLP``: ``linear``/``linear_1`` -> ``fc1``/``fc2``.  LayerNorm ``scale``/``offset`` -> ``weight``/``bias``.
* ``CrossAttention``: ``layer_norm``/``layer_norm_1``/``layer_norm_2`` -> ``q_norm``/``kv_norm``/``mlp_norm``.
* ``SelfAttention``: ``layer_norm``/``layer_norm_1`` -> ``norm``/``mlp_norm``.
* ``PerceiverEncoder``: ``~/trainable_position_encoding/pos_embs`` -> ``latents``, ``~/cross_attention``,
  ``~/self_attention[_i]`` -> ``self_attention.{i}``.
* ``BasicDecoder``: ``cross_attention``, ``output`` (final Linear), ``~/trainable_position_encoding/pos_embs``.

Haiku Linear ``w`` is ``[in, out]`` (y = x @ w + b) and is transposed for ``torch.nn.Linear``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .build import assign_weights, empty_model
from .safe_pickle import load_pickle

Converted = dict[str, tuple[str, torch.Tensor]]  # torch name -> (Haiku key, tensor)

ENCODER_PREFIXES = ("perceiver_encoder", "encoder")
CLASSIFIER_DECODER_PREFIXES = ("classification_decoder/~/basic_decoder", "basic_decoder")


# ----------------------------------------------------------------------------------------------- reading sources
def read_haiku(source: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Normalise a Haiku checkpoint to flat ``({"module/param": float32 tensor}, state)``.

    ``source``: nested ``{module: {param: array}}``, flat ``{"module/param": array}``, ``{"params": ..., "state":
    ...}``, or a path to a ``.pickle``/``.pkl`` (read by :func:`~perceiverio.weights.safe_pickle.load_pickle`) or
    ``.npz`` (keys may carry a ``params/`` / ``state/`` prefix, as in our golden files; other prefixes are then
    ignored).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"Haiku checkpoint {path} does not exist")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
            if any(k.startswith("params/") for k in raw):
                source = {
                    "params": {k[7:]: v for k, v in raw.items() if k.startswith("params/")},
                    "state": {k[6:]: v for k, v in raw.items() if k.startswith("state/")},
                }
            else:
                source = raw
        elif path.suffix in (".pickle", ".pkl", ".pystate"):  # .pystate: the released optical-flow checkpoint
            source = load_pickle(path)
        else:
            raise ValueError(
                f"unsupported Haiku checkpoint file {path.name}: expected .pickle, .pkl or .npz "
                "(or .pystate, the released optical-flow pickle)"
            )
    if not isinstance(source, Mapping):
        raise ValueError(f"Haiku params must be a mapping (or a .pickle/.npz path), got {type(source).__name__}")
    if isinstance(source.get("params"), Mapping):
        return _flatten(source["params"]), _flatten(source.get("state") or {})
    return _flatten(source), {}


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        elif isinstance(value, torch.Tensor):
            flat[name] = value.detach().to("cpu", torch.float32).clone()
        else:
            try:
                flat[name] = torch.from_numpy(np.array(value, dtype=np.float32))
            except (TypeError, ValueError) as e:
                raise ValueError(f"Haiku param {name!r} is not a numeric array ({type(value).__name__})") from e
    return flat


class HaikuParams:
    """Flat Haiku params that remember which keys were read and which were asked for but absent."""

    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        self.params = params
        self.used: set[str] = set()
        self.missing: list[str] = []

    def get(self, key: str) -> torch.Tensor | None:
        if key not in self.params:
            self.missing.append(key)
            return None
        self.used.add(key)
        return self.params[key]

    def has(self, module: str) -> bool:
        return any(k.startswith(module + "/") for k in self.params)

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.params:
            raise ValueError(f"not a matching Perceiver IO Haiku checkpoint: it has no {key!r}")
        return tuple(self.params[key].shape)

    def prefix(self, candidates: tuple[str, ...]) -> str:
        """The first of ``candidates`` that names a module here (official names vary between models)."""
        found = [p for p in candidates if self.has(p)]
        if not found:
            raise ValueError(f"not a matching Perceiver IO Haiku checkpoint: no module {' or '.join(candidates)}")
        return found[0]

    def unused(self) -> list[str]:
        return sorted(set(self.params) - self.used)


def _listing(keys: list[str], limit: int = 20) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def haiku_name(base: str, i: int) -> str:
    """Haiku's i-th module of a name: ``base``, ``base_1``, ``base_2``, ..."""
    return base if i == 0 else f"{base}_{i}"


# ------------------------------------------------------------------------------------- module builders (reusable)
def put(hp: HaikuParams, hk: str, pt: str, out: Converted, transform: Callable | None = None) -> None:
    t = hp.get(hk)
    if t is not None:
        out[pt] = (hk, transform(t) if transform is not None else t)


def linear(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    # Haiku's [in, out] -> torch's [out, in]; a weight of another rank is left for the shape check to report
    put(hp, f"{hk}/w", f"{pt}.weight", out, lambda w: w.T.contiguous() if w.dim() == 2 else w)
    put(hp, f"{hk}/b", f"{pt}.bias", out)


def layer_norm(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    put(hp, f"{hk}/scale", f"{pt}.weight", out)
    put(hp, f"{hk}/offset", f"{pt}.bias", out)


def attention(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    for i, name in enumerate(("q_proj", "k_proj", "v_proj", "o_proj")):
        linear(hp, f"{hk}/{haiku_name('linear', i)}", f"{pt}.{name}", out)


def mlp(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    linear(hp, f"{hk}/linear", f"{pt}.fc1", out)
    linear(hp, f"{hk}/linear_1", f"{pt}.fc2", out)


def cross_attention_block(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    """Official ``CrossAttention`` -> :class:`~perceiverio.core.blocks.CrossAttentionBlock`."""
    for i, name in enumerate(("q_norm", "kv_norm", "mlp_norm")):
        layer_norm(hp, f"{hk}/{haiku_name('layer_norm', i)}", f"{pt}.{name}", out)
    attention(hp, f"{hk}/attention", f"{pt}.attention", out)
    mlp(hp, f"{hk}/mlp", f"{pt}.mlp", out)


def self_attention_block(hp: HaikuParams, hk: str, pt: str, out: Converted) -> None:
    """Official ``SelfAttention`` -> :class:`~perceiverio.core.blocks.SelfAttentionBlock`."""
    layer_norm(hp, f"{hk}/layer_norm", f"{pt}.norm", out)
    layer_norm(hp, f"{hk}/layer_norm_1", f"{pt}.mlp_norm", out)
    attention(hp, f"{hk}/attention", f"{pt}.attention", out)
    mlp(hp, f"{hk}/mlp", f"{pt}.mlp", out)


def encoder(hp: HaikuParams, hk: str, pt: str, out: Converted, num_self_attends: int) -> None:
    """Official ``PerceiverEncoder`` -> :class:`~perceiverio.core.encoder.PerceiverEncoder`."""
    put(hp, f"{hk}/~/trainable_position_encoding/pos_embs", f"{pt}.latents", out)
    cross_attention_block(hp, f"{hk}/~/cross_attention", f"{pt}.cross_attention", out)
    for i in range(num_self_attends):
        self_attention_block(hp, f"{hk}/~/{haiku_name('self_attention', i)}", f"{pt}.self_attention.{i}", out)


def basic_decoder(
    hp: HaikuParams, hk: str, pt: str, out: Converted, final_project: bool, queries: str | None = None
) -> None:
    """Official ``BasicDecoder`` -> :class:`~perceiverio.core.decoder.PerceiverDecoder` (+ its trainable queries
    into the :class:`~perceiverio.core.position.TrainablePositionEncoding` at torch path ``queries``)."""
    cross_attention_block(hp, f"{hk}/cross_attention", f"{pt}.cross_attention", out)
    if final_project:
        linear(hp, f"{hk}/output", f"{pt}.projection", out)
    if queries is not None:
        put(hp, f"{hk}/~/trainable_position_encoding/pos_embs", f"{queries}.embeddings", out)


# ------------------------------------------------------------------------------------- config inference from shapes
def infer_encoder_config(hp: HaikuParams, enc: str, num_input_channels: int, defaults: Any) -> Any:
    """Sizes from shapes; head counts, ``num_blocks`` and ``use_query_residual`` from ``defaults`` (an
    :class:`~perceiverio.core.config.EncoderConfig`), as no array reveals them."""
    n, d = hp.shape(f"{enc}/~/trainable_position_encoding/pos_embs")
    ca, sa = f"{enc}/~/cross_attention", f"{enc}/~/self_attention"
    layers = next(i for i in range(len(hp.params) + 1) if not hp.has(f"{enc}/~/{haiku_name('self_attention', i)}"))
    if layers == 0:
        raise ValueError(f"not a Perceiver IO Haiku checkpoint: no {sa}")
    seen = (
        hp.shape(f"{ca}/attention/linear/w")[1],
        hp.shape(f"{ca}/attention/linear_2/w")[1],
        hp.shape(f"{sa}/attention/linear/w")[1],
        hp.shape(f"{sa}/attention/linear_2/w")[1],
    )
    for qk in (seen[0], None):  # the official encoder passes one qk/v setting to the cross- and self-attends
        for v in (seen[1], None):
            qk_c, qk_s = qk or num_input_channels, qk or d
            if (qk_c, v or qk_c, qk_s, v or qk_s) == seen:
                return dataclasses.replace(
                    defaults,
                    num_latents=n,
                    num_latent_channels=d,
                    num_self_attends_per_block=layers,
                    qk_channels=qk,
                    v_channels=v,
                    cross_attention_widening_factor=hp.shape(f"{ca}/mlp/linear/w")[1] // d,
                    self_attention_widening_factor=hp.shape(f"{sa}/mlp/linear/w")[1] // d,
                )
    raise ValueError(
        f"encoder attention widths (cross qk/v {seen[:2]}, self qk/v {seen[2:]}) are not expressible "
        "with one qk_channels/v_channels setting"
    )


def infer_decoder_config(hp: HaikuParams, dec: str, defaults: Any) -> Any:
    """A :class:`~perceiverio.core.config.DecoderConfig` from a ``BasicDecoder`` (heads/residual from defaults)."""
    ca = f"{dec}/cross_attention"
    e = hp.shape(f"{ca}/layer_norm/scale")[0]
    out = hp.shape(f"{dec}/output/w")[1] if f"{dec}/output/w" in hp.params else None
    return dataclasses.replace(
        defaults,
        num_query_channels=e,
        num_output_channels=out,
        qk_channels=hp.shape(f"{ca}/attention/linear/w")[1],
        v_channels=hp.shape(f"{ca}/attention/linear_2/w")[1],
        widening_factor=hp.shape(f"{ca}/mlp/linear/w")[1] // e,
    )


# ---------------------------------------------------------------------------------------------------- entry points
@dataclasses.dataclass(frozen=True)
class HaikuConverter:
    """How one model class loads from Haiku params.

    ``convert(hp, model) -> Converted`` maps the Haiku arrays onto the (meta-device) ``model``'s parameter names;
    ``infer(hp, config_class) -> config`` reads a config of ``config_class`` from the array shapes (None: the caller
    must give a config, as for the plain :class:`~perceiverio.core.perceiver.PerceiverIO`).
    """

    convert: Callable[[HaikuParams, nn.Module], Converted]
    config_class: type | None = None
    infer: Callable[[HaikuParams, type], Any] | None = None


def load_from_haiku(
    cls: type, source: Any, config: Any = None, *, converter: HaikuConverter, **overrides: Any
) -> nn.Module:
    """Build ``cls`` from official Haiku params with ``converter`` (what ``Model.from_haiku`` runs).

    Without ``config``, every size is inferred from the array shapes; head counts, ``num_blocks`` and query
    residuals (which no shape reveals) are the config class's defaults (the released models'). ``overrides``
    replace config fields. Every model parameter must come from exactly one Haiku array: missing or unexpected
    Haiku keys and shape mismatches raise a ``ValueError`` naming them. The model is built on the meta device and
    takes the converted arrays without being initialised first.
    """
    params, state = read_haiku(source)
    # Haiku state (BatchNorm EMAs) is offered to converters under a ``state/`` prefix; unread entries are unexpected
    hp = HaikuParams({**params, **{f"state/{k}": v for k, v in state.items()}})
    if config is None:
        if converter.infer is None:
            raise ValueError(f"{cls.__name__}.from_haiku needs a config: head counts are not visible in the arrays")
        config = converter.infer(hp, converter.config_class)
    if overrides:
        try:
            config = dataclasses.replace(config, **overrides)
        except TypeError as e:
            raise ValueError(f"invalid override for {type(config).__name__}: {e}") from e
    model = empty_model(cls, config)
    mapped = converter.convert(hp, model)
    problems = []
    if hp.missing:
        problems.append(f"missing Haiku keys: {_listing(hp.missing)}")
    unexpected = hp.unused()
    if unexpected:
        problems.append(f"unexpected Haiku keys: {_listing(unexpected)}")
    expected = model.state_dict()
    uncovered = sorted(set(expected) - set(mapped))
    if uncovered and not hp.missing:
        problems.append(f"model parameters without a Haiku source: {_listing(uncovered)}")
    for name, (hk, t) in mapped.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            problems.append(f"{hk} has shape {tuple(t.shape)}, but {name} needs {tuple(expected[name].shape)}")
    if problems:
        raise ValueError(f"cannot load Haiku params into {cls.__name__}: " + "; ".join(problems))
    return assign_weights(model, {name: t for name, (_, t) in mapped.items()}).eval()


class _KeyRecorder(HaikuParams):
    """Answers every key with a placeholder, so that a converter reveals its torch-name -> Haiku-key map."""

    def __init__(self) -> None:
        super().__init__({})

    def get(self, key: str) -> torch.Tensor:
        return torch.empty(0, 0)

    def has(self, module: str) -> bool:
        return True


def export_haiku(model: nn.Module, converter: HaikuConverter) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of :func:`load_from_haiku`: ``model``'s weights as nested ``{module: {param: float32 array}}``
    in the official naming (Linear ``w`` as ``[in, out]``, Conv ``w`` as HWIO, BatchNorm arrays as ``[1, 1, 1, C]``).
    A model with Haiku state (BatchNorm statistics) gives ``{"params": ..., "state": ...}`` instead."""
    state = model.state_dict()
    out: dict[str, dict[str, np.ndarray]] = {}
    hk_state: dict[str, dict[str, np.ndarray]] = {}
    for name, (hk, _) in converter.convert(_KeyRecorder(), model).items():
        t = state[name].detach().to("cpu", torch.float32)
        module, param = hk.rsplit("/", 1)
        if param == "w" and t.dim() in (2, 4):
            t = t.T if t.dim() == 2 else t.permute(2, 3, 1, 0)  # Linear [in, out]; Conv OIHW -> HWIO
        elif "batchnorm" in module and t.dim() == 1:
            t = t.reshape(1, 1, 1, -1)
        array = t.numpy().astype(np.int32) if param == "counter" else t.numpy().copy()
        if module.startswith("state/"):
            hk_state.setdefault(module[len("state/") :], {})[param] = array
        else:
            out.setdefault(module, {})[param] = array
    return {"params": out, "state": hk_state} if hk_state else out
