"""Loader entry points driven with generated corrupt checkpoints: ``from_pretrained`` on a folder whose
``config.json`` or ``model.safetensors`` is damaged (fields changed or dropped, a foreign ``model_class``, bytes
truncated or overwritten, tensors dropped, added, reshaped or retyped), ``from_transformers`` on a damaged state
dict or config, ``from_haiku`` on damaged parameters. The message must name the damaged file or key."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fuzz.cases import Arg, EntryPoint, model
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

BAD_VALUES = (None, -1, 0, 10**9, 10**18, 2.5, "x", [], {}, True, [1, 2])
FOREIGN_CLASSES = (
    "perceiverio.cli.main",
    "perceiverio.weights.hub.download_checkpoint",
    "os.system",
    "builtins.eval",
    "torch.nn.Linear",
    "perceiverio.tasks.sets.SetModelConfig",
    "SetModel",
    "",
    "perceiverio.core.perceiver.PerceiverIOConfig",
    "perceiverio.training.base.PerceiverTask",
)


@dataclasses.dataclass(frozen=True)
class Damage:
    """A damage to apply; ``names``: what the error message must mention (one of them)."""

    what: str
    detail: Any
    names: tuple[str, ...]

    def __repr__(self) -> str:
        return f"{self.what}:{self.detail!r}"[:80]


@functools.cache
def _saved() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-")) / "saved"
    model("set").save_pretrained(folder)
    return folder


def _leaves(data: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*prefix, k))] or [prefix]
    if isinstance(data, list) and data:
        return [p for i, v in enumerate(data) for p in _leaves(v, (*prefix, i))]
    return [prefix]


@st.composite
def damages(draw) -> tuple[str, Damage]:
    meta = json.loads((_saved() / "config.json").read_text())
    keys = sorted(load_file(_saved() / "model.safetensors"))
    size = (_saved() / "model.safetensors").stat().st_size
    what = draw(
        st.sampled_from(["field", "drop", "model_class", "config_bytes", "truncate", "overwrite", "tensor", "path"])
    )
    if what == "field":
        leaf = draw(st.sampled_from([p for p in _leaves(meta) if p]))
        damage = Damage(what, (leaf, draw(st.sampled_from(BAD_VALUES))), ("config.json",))
    elif what == "drop":
        leaf = draw(st.sampled_from([p for p in _leaves(meta) if p and not isinstance(p[-1], int)]))
        damage = Damage(what, leaf, ("config.json",))
    elif what == "model_class":
        damage = Damage(what, draw(st.sampled_from(FOREIGN_CLASSES)), ("model_class",))
    elif what == "config_bytes":
        damage = Damage(what, (draw(st.integers(0, 400)), draw(st.binary(max_size=8))), ("config.json",))
    elif what in ("truncate", "overwrite"):
        offset = draw(st.integers(0, size - 1))
        damage = Damage(what, (offset, draw(st.binary(min_size=1, max_size=16))), ("model.safetensors",))
    elif what == "tensor":
        op, key = draw(st.sampled_from(["drop", "add", "reshape", "int", "bool"])), draw(st.sampled_from(keys))
        damage = Damage(what, (op, key), ("model.safetensors",))
    else:
        damage = Damage(what, draw(st.sampled_from(["missing", "file", "empty"])), ("fuzzckpt",))
    return f"{what}", damage


def _set_leaf(data: Any, path: tuple, value: Any, drop: bool = False) -> None:
    for k in path[:-1]:
        data = data[k]
    if drop:
        del data[path[-1]]
    else:
        data[path[-1]] = value


def _apply(damage: Damage, folder: Path) -> Path:
    config, weights = folder / "config.json", folder / "model.safetensors"
    if damage.what == "path":
        shutil.rmtree(folder)
        if damage.detail == "file":
            folder.write_text("not a folder")
        elif damage.detail == "empty":
            folder.mkdir()
        return folder
    meta = json.loads(config.read_text())
    if damage.what in ("field", "drop"):
        path, value = (damage.detail, None) if damage.what == "drop" else damage.detail
        _set_leaf(meta, path, value, drop=damage.what == "drop")
        config.write_text(json.dumps(meta))
    elif damage.what == "model_class":
        meta["model_class"] = damage.detail
        config.write_text(json.dumps(meta))
    elif damage.what == "config_bytes":
        text = config.read_bytes()
        offset, junk = damage.detail
        config.write_bytes(text[:offset] + junk)
    elif damage.what in ("truncate", "overwrite"):
        data = weights.read_bytes()
        offset, junk = damage.detail
        weights.write_bytes(
            data[:offset] if damage.what == "truncate" else data[:offset] + junk + data[offset + len(junk) :]
        )
    elif damage.what == "tensor":
        state = load_file(weights)
        op, key = damage.detail
        if op == "drop":
            del state[key]
        elif op == "add":
            state[key + ".extra"] = torch.zeros(3)
        elif op == "reshape":
            state[key] = torch.zeros(*[d + 1 for d in state[key].shape], 1)
        else:
            state[key] = state[key].to(torch.int32 if op == "int" else torch.bool)
        save_file(state, weights)
    return folder


def _from_pretrained(damage):
    from perceiverio import PerceiverIO

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fuzzckpt"
        shutil.copytree(_saved(), folder)
        if damage is not None:
            _apply(damage, folder)
        return PerceiverIO.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------- transformers
@functools.cache
def _hf() -> tuple[dict, dict]:
    import transformers

    config = transformers.PerceiverConfig(
        num_latents=8,
        d_latents=32,
        d_model=16,
        num_blocks=1,
        qk_channels=16,
        v_channels=32,
        num_self_attends_per_block=2,
        num_self_attention_heads=4,
        num_cross_attention_heads=1,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    hf = transformers.PerceiverForMaskedLM(config)
    return hf.state_dict(), config.to_dict()


@st.composite
def hf_damages(draw) -> tuple[str, Damage]:
    state, config = _hf()
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(state)))
        op = draw(st.sampled_from(["drop", "add", "reshape", "int", "list"]))
        return f"state:{op}", Damage(op, key, (key, "key", "shape"))
    key = draw(st.sampled_from(sorted(k for k in config if not k.startswith("_"))))
    return "config", Damage("config", (key, draw(st.sampled_from(BAD_VALUES))), (key, "config"))


def _from_transformers(damage):
    from perceiverio import MaskedLanguageModel

    state, config = _hf()
    state, config = dict(state), dict(config)
    if damage is not None:
        key = damage.detail
        if damage.what == "drop":
            del state[key]
        elif damage.what == "add":
            state[key + ".extra"] = torch.zeros(2)
        elif damage.what == "reshape":
            state[key] = torch.zeros(*[d + 1 for d in state[key].shape], 2)
        elif damage.what == "int":
            state[key] = state[key].to(torch.int64)
        elif damage.what == "list":
            state[key] = state[key].tolist()
        else:
            config[damage.detail[0]] = damage.detail[1]
    return MaskedLanguageModel.from_transformers(state, config=config)


# ----------------------------------------------------------------------------------------------- haiku
@functools.cache
def _haiku() -> dict:
    from perceiverio.weights import to_haiku

    return to_haiku(model("mlm"))


HAIKU_OPS = ["drop_module", "drop", "add", "reshape", "str", "object", "nested", "scalar"]


@st.composite
def haiku_damages(draw, params_of=None, prefix: str = "haiku") -> tuple[str, Damage]:
    """A damage to one parameter of a ``{module: {name: array}}`` tree (default: the tiny MLM's)."""
    params = (params_of or _haiku)()
    module = draw(st.sampled_from(sorted(params)))
    name = draw(st.sampled_from(sorted(params[module])))
    op = draw(st.sampled_from(HAIKU_OPS))
    return f"{prefix}:{op}", Damage(op, (module, name), (module, name))


def _damaged(source: dict, damage) -> dict:
    """A copy of the parameter tree ``source`` with ``damage`` (from :func:`haiku_damages`) applied."""
    params = {m: dict(p) for m, p in source.items()}
    if damage is None:
        return params
    module, name = damage.detail
    if damage.what == "drop_module":
        del params[module]
    elif damage.what == "drop":
        del params[module][name]
    elif damage.what == "add":
        params[module][name + "_extra"] = np.zeros(3, np.float32)
    elif damage.what == "reshape":
        params[module][name] = np.zeros((*[d + 1 for d in params[module][name].shape], 2), np.float32)
    elif damage.what == "str":
        params[module][name] = np.array(["a"] * params[module][name].size).reshape(params[module][name].shape)
    elif damage.what == "object":
        params[module][name] = object()
    elif damage.what == "nested":
        params[module][name] = {"inner": params[module][name]}
    else:
        params[module][name] = 3.0
    return params


def _from_haiku(damage):
    from perceiverio import MaskedLanguageModel

    params = _damaged(_haiku(), damage)
    return MaskedLanguageModel.from_haiku(params, config=model("mlm").config)


# ------------------------------------------------------------------------------------ Perceiver AR (official Haiku)
GOLDEN_AR = Path(__file__).parents[1] / "data" / "golden_perceiver_ar" / "golden.npz"


@functools.cache
def _ar_params() -> dict:
    with np.load(GOLDEN_AR) as z:
        flat = {k[len("params/") :]: z[k] for k in z.files if k.startswith("params/")}
    nested: dict = {}
    for key, value in flat.items():
        module, name = key.rsplit("/", 1)
        nested.setdefault(module, {})[name] = value
    return nested


def _causal_from_haiku(damage):
    from perceiverio import CausalLanguageModelConfig
    from perceiverio.weights.causal import causal_model_from_haiku

    config = CausalLanguageModelConfig.tiny(
        vocab_size=262, max_context=32, num_latents=8, num_input_channels=32, num_latent_channels=32,
        num_cross_attention_heads=2, num_self_attention_heads=2, max_wavelength=32,
    )  # fmt: skip
    params = _damaged(_ar_params(), damage)
    return causal_model_from_haiku(params, config)


LOADER_ENTRY_POINTS = [
    EntryPoint(
        "from_pretrained",
        _from_pretrained,
        {"damage": Arg(lambda rng: None, kind="value", optional=True, draws=damages())},
    ),
    EntryPoint(
        "from_transformers",
        _from_transformers,
        {"damage": Arg(lambda rng: None, kind="value", optional=True, draws=hf_damages())},
    ),
    EntryPoint(
        "from_haiku", _from_haiku, {"damage": Arg(lambda rng: None, kind="value", optional=True, draws=haiku_damages())}
    ),
    EntryPoint(
        "causal_model_from_haiku",
        _causal_from_haiku,
        {"damage": Arg(lambda rng: None, kind="value", optional=True, draws=haiku_damages(_ar_params, "ar"))},
    ),
]
