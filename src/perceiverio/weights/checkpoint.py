"""Our checkpoint format: ``model.safetensors`` + ``config.json`` in a folder, loadable without Lightning.

``config.json`` holds the model class and its config dataclass, nested dataclasses tagged with their class so that
any task config (the multimodal one holds per-modality adapter configs) round-trips exactly. The allow-list: only
classes defined in the ``perceiverio`` package, looked up among its modules already imported (a file never makes
anything import), are ever instantiated from a file, and only dataclasses (configs) or :class:`PerceiverIO`
subclasses (the model); a model class of your own is accepted when you load through it
(``MyModel.from_pretrained``). Writes are atomic (temporary file, then rename).

:func:`load_pretrained` also takes a Hub repository id (``org/name``, see :mod:`perceiverio.weights.hub`) and
:func:`push_to_hub` writes :func:`save_pretrained` into a temporary folder and uploads it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.perceiver import PerceiverIO
from . import hub
from .build import assign_weights, empty_model

FORMAT = "perceiverio-checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def config_to_dict(obj: Any) -> Any:
    """A config dataclass (nested) -> JSON-able data, dataclasses tagged with ``__class__``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"__class__": qualified_name(type(obj))}
        out.update({f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, (tuple, list)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"cannot serialise config value of type {type(obj).__name__}: {obj!r}")


def resolve_class(qualname: str) -> type:
    """The perceiverio class named ``module.Name`` (see the allow-list in the module docstring)."""
    module, _, name = qualname.rpartition(".")
    if not (module == "perceiverio" or module.startswith("perceiverio.")):
        raise ValueError(f"refusing to build {qualname!r} from a checkpoint: only perceiverio classes are allowed")
    cls = getattr(sys.modules.get(module), name, None)
    if not isinstance(cls, type):
        raise ValueError(f"checkpoint names unknown class {qualname!r}")
    return cls


def config_from_dict(data: Any) -> Any:
    """Inverse of :func:`config_to_dict` (lists become tuples, as in our frozen configs)."""
    if isinstance(data, dict) and "__class__" in data:
        cls = resolve_class(data["__class__"])
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed); returns it.
    ``Model.from_pretrained(directory)`` rebuilds the model."""
    directory = Path(directory)
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"{type(model).__name__} has no config dataclass to save")
    # tied or shared tensors are stored once per name; clone so safetensors sees no shared storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "model_class": qualified_name(type(model)), "config": config_to_dict(config)}
    _atomic_write(directory / WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    _atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def check_config(meta: Any, where: str = "the checkpoint") -> None:
    """ValueError unless ``meta`` (a parsed ``config.json``) is one of ours."""
    if isinstance(meta, Mapping) and meta.get("model_type") == "perceiver":
        raise ValueError(
            f"{where} is a transformers Perceiver checkpoint, not a perceiverio one: load it with "
            "Model.from_transformers"
        )
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{where} is not a perceiverio checkpoint config (format {FORMAT!r} expected; for a "
            "transformers checkpoint use Model.from_transformers)"
        )


def _model_class(name: str, expected: type | None) -> type:
    if expected is not None and name == qualified_name(expected):
        return expected  # your own subclass, loaded through itself
    cls = resolve_class(name)
    if not (isinstance(cls, type) and issubclass(cls, PerceiverIO)):
        raise ValueError(f"checkpoint model_class {name!r} is not a PerceiverIO model")
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"the checkpoint holds a {cls.__name__}, not a {expected.__name__}")
    return cls


def load_pretrained(
    name_or_path: str | os.PathLike,
    expected: type | None = None,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
    token: str | bool | None = None,
) -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` (eval mode), from a folder or a Hub repository id.

    ``expected``: a class the model must be. The model is built on the meta device and takes the file's tensors
    as they are loaded onto ``map_location`` (no initialisation, no second copy).
    """
    if hub.is_repo_id(name_or_path):
        directory = hub.download_checkpoint(
            str(name_or_path),
            revision,
            weights=(WEIGHTS,),
            token=token,
            check_config=lambda meta: check_config(meta, str(name_or_path)),
        )
    elif revision is not None:
        raise ValueError(f"revision= applies to Hugging Face Hub repositories; {name_or_path} is a local path")
    else:
        directory = Path(name_or_path)
    if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
        raise ValueError(f"{directory} is not a perceiverio checkpoint folder (needs {CONFIG} and {WEIGHTS})")
    try:
        meta = json.loads((directory / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{directory / CONFIG} is not valid JSON: {e}") from e
    check_config(meta, str(directory / CONFIG))
    cls = _model_class(meta["model_class"], expected)
    model = empty_model(cls, config_from_dict(meta["config"]))
    return assign_weights(model, load_file(directory / WEIGHTS, device=str(map_location))).eval()


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Upload ``model`` to the Hugging Face Hub repository ``repo_id`` (created if missing) as the folder
    :func:`save_pretrained` writes, in one commit; ``Model.from_pretrained(repo_id)`` loads it back."""
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder)
        message = commit_message or f"Upload {type(model).__name__} (perceiverio)"
        return hub.upload_folder(
            folder,
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=message,
            create_pr=create_pr,
        )
