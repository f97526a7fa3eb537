"""Our checkpoint format: ``model.safetensors`` + ``config.json`` in a folder, loadable without Lightning.

``config.json`` holds the model class and its config dataclass, nested dataclasses tagged with their class so that
any task config (the multimodal one holds per-modality adapter configs) round-trips exactly. Only classes from the
``perceiverio`` package are ever instantiated from a file. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "perceiverio-checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def config_to_dict(obj: Any) -> Any:
    """A config dataclass (nested) -> JSON-able data, dataclasses tagged with ``__class__``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"__class__": f"{type(obj).__module__}.{type(obj).__qualname__}"}
        out.update({f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, (tuple, list)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"cannot serialise config value of type {type(obj).__name__}: {obj!r}")


def _resolve(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    if not (module == "perceiverio" or module.startswith("perceiverio.")):
        raise ValueError(f"refusing to build {qualname!r} from a checkpoint: only perceiverio classes are allowed")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"checkpoint names unknown class {qualname!r}") from e
    return cls


def config_from_dict(data: Any) -> Any:
    """Inverse of :func:`config_to_dict` (lists become tuples, as in our frozen configs)."""
    if isinstance(data, dict) and "__class__" in data:
        cls = _resolve(data["__class__"])
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{data['__class__']} is not a config dataclass")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"__class__"})
        if unknown:
            raise ValueError(f"config for {cls.__name__} has unknown fields {unknown}")
        return cls(**{k: config_from_dict(v) for k, v in data.items() if k != "__class__"})
    if isinstance(data, list):
        return tuple(config_from_dict(v) for v in data)
    if isinstance(data, dict):
        return {k: config_from_dict(v) for k, v in data.items()}
    return data


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"{type(model).__name__} has no config dataclass to save")
    # tied or shared tensors are stored once per name; clone so safetensors sees no shared storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "config": config_to_dict(config)}
    _atomic_write(directory / WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    _atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def load_pretrained(directory: str | os.PathLike, expected: type | None = None,
                    map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` (eval mode). ``expected``: a class the model must be."""
    directory = Path(directory)
    if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
        raise ValueError(f"{directory} is not a perceiverio checkpoint folder (needs {CONFIG} and {WEIGHTS})")
    try:
        meta = json.loads((directory / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{directory / CONFIG} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG} is not a perceiverio checkpoint config (format {FORMAT!r} expected; "
                         "for a transformers checkpoint use Model.from_transformers)")
    cls = _resolve(meta["model_class"])
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"{directory} holds a {cls.__name__}, not a {expected.__name__}")
    model = cls.from_config(config_from_dict(meta["config"]))
    model.load_state_dict(load_file(directory / WEIGHTS, device=str(map_location)), strict=True)
    return model.eval()
