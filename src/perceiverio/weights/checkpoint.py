"""Our checkpoint format: ``model.safetensors`` + ``config.json`` in a folder, loadable without Lightning.

``config.json`` holds the model class and its config dataclass, nested dataclasses tagged with their class so that
any task config (the multimodal one holds per-modality adapter configs) round-trips exactly. The allow-list: only
classes defined in the ``perceiverio`` package, looked up among its modules already imported (a file never makes
anything import), are ever instantiated from a file, and only dataclasses (configs) or :class:`PerceiverIO`
subclasses and :class:`~perceiverio.tasks.causal.CausalLanguageModel` (the model); a model class of your own is
accepted when you load through it (``MyModel.from_pretrained``). Writes are atomic (temporary file, then rename),
and a model with a NaN or infinite value in any tensor is never written.

:func:`load_pretrained` also takes a Hub repository id (``org/name``, see :mod:`perceiverio.weights.hub`) and
:func:`push_to_hub` writes :func:`save_pretrained` into a temporary folder and uploads it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.latents import check_num_latents
from ..core.perceiver import PerceiverIO
from ..files import TMP_SUFFIX, atomic_write
from ..tasks import (
    CausalLanguageModel,
    ImageClassifier,
    MaskedLanguageModel,
    MultimodalAutoencoder,
    MultitaskClassifier,
    OpticalFlow,
    SequenceClassifier,
    SetModel,
)
from . import hub
from .build import assign_weights, check_fits, empty_model

FORMAT = "perceiverio-checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
STALE_SECONDS = 3600.0  # such a file this old was left by an interrupted write


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


def remove_stale_temporaries(directory: str | os.PathLike, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files that an interrupted :func:`save_pretrained` left in ``directory``
    (``.model.safetensors.*.tmp``, ``.config.json.*.tmp``) whose last change is at least ``older_than`` seconds old
    (0: all of them, for a folder that one writer owns). Returns the files removed."""
    folder, removed = Path(directory), []
    if not folder.is_dir():
        return removed
    now = time.time()
    for name in (WEIGHTS, CONFIG):
        for f in folder.glob(f".{name}.*{TMP_SUFFIX}"):
            try:
                if f.is_file() and now - f.stat().st_mtime >= older_than:
                    f.unlink()
                    removed.append(f)
            except FileNotFoundError:  # removed meanwhile by another writer
                continue
    return removed


def finite_flag(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor, False when one of ``tensors`` may hold a NaN or an infinity: the norm of every tensor in one
    fused reduction (the largest magnitude for float16), without a host sync. A False can be wrong (a norm overflows
    for values around 1e19); :func:`first_non_finite` confirms it."""
    if not tensors:
        return torch.tensor(True)
    order = float("inf") if any(t.dtype == torch.float16 for t in tensors) else 2.0
    norms = torch._foreach_norm(list(tensors), order)
    device = norms[0].device
    return torch.stack([n.to(device, torch.float32) for n in norms]).isfinite().all()


def first_non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` holding a NaN or an infinity, or None: one fused
    check (:func:`finite_flag`), then a search only when it fails."""
    named = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    if bool(finite_flag([v for _, v in named])):
        return None
    return next((k for k, v in named if not bool(torch.isfinite(v).all())), None)


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed); returns it.
    ``Model.from_pretrained(directory)`` rebuilds the model. A model with a NaN or infinite value in any tensor is
    refused (ValueError naming the first such tensor); temporary files that an interrupted write left there more
    than an hour ago are removed."""
    directory = Path(directory)
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"{type(model).__name__} has no config dataclass to save")
    # tied or shared tensors are stored once per name; clone so safetensors sees no shared storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    bad = first_non_finite(state)
    if bad is not None:
        count = int((~torch.isfinite(state[bad])).sum())
        raise ValueError(
            f"refusing to save {type(model).__name__} to {str(directory)!r}: tensor {bad!r} holds {count} NaN or "
            f"infinite value(s) of {state[bad].numel()}; expected finite weights (training diverged: lower the "
            "learning rate, clip gradients or train in bf16)"
        )
    meta = {"format": FORMAT, "model_class": qualified_name(type(model)), "config": config_to_dict(config)}
    remove_stale_temporaries(directory)
    atomic_write(directory / WEIGHTS, lambda p: save_file(state, p, metadata={"format": FORMAT}))
    atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
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


MODEL_CLASSES: dict[str, type] = {
    qualified_name(cls): cls
    for cls in (
        PerceiverIO,
        MaskedLanguageModel,
        SequenceClassifier,
        MultitaskClassifier,
        ImageClassifier,
        OpticalFlow,
        MultimodalAutoencoder,
        SetModel,
        CausalLanguageModel,
    )
}
"""The allow-list of the model classes a ``config.json`` may name (plus, when loading through a class of your own,
that class itself)."""


def _model_class(name: object, expected: type | None) -> type:
    if expected is not None and name == qualified_name(expected):
        return expected  # your own subclass, loaded through itself
    cls = MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"checkpoint model_class {name!r} is not one of perceiverio's model classes "
            f"({', '.join(c.__name__ for c in MODEL_CLASSES.values())}): refusing to build it"
        )
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"the checkpoint holds a {cls.__name__}, not a {expected.__name__}")
    return cls


def load_pretrained(
    name_or_path: str | os.PathLike,
    expected: type | None = None,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
    token: str | bool | None = None,
    num_latents: int | None = None,
) -> nn.Module:
    """Rebuild the model saved by :func:`save_pretrained` (eval mode), from a folder or a Hub repository id.

    ``expected``: a class the model must be. The model is built on the meta device and takes the file's tensors
    as they are loaded onto ``map_location`` (no initialisation, no second copy). ``num_latents``: give the encoder
    that many latents, resized from the stored ones after loading them at their stored size (so every check of
    the file still runs; see :meth:`PerceiverIO.resize_latents`).
    """
    if num_latents is not None:
        check_num_latents(num_latents, "num_latents")
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
    config_file, weights_file = directory / CONFIG, directory / WEIGHTS
    try:
        meta = json.loads(config_file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    check_config(meta, str(config_file))
    if not isinstance(meta.get("model_class"), str) or not isinstance(meta.get("config"), Mapping):
        raise ValueError(f"{config_file} must hold a model_class string and a config object")
    cls = _model_class(meta["model_class"], expected)
    try:
        model = empty_model(cls, config_from_dict(meta["config"]))  # on the meta device: no memory yet
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RuntimeError) as e:
        raise ValueError(f"{config_file}: the config does not build a {cls.__name__}: {first_line(e)}") from None
    # names and shapes, before any tensor is read
    check_fits(model, read_header(weights_file), str(weights_file), str(config_file))
    try:
        state = load_file(weights_file, device=str(map_location))
    except Exception as e:  # safetensors' own error types: a corrupt file
        raise ValueError(f"{weights_file} is not a valid safetensors file: {first_line(e)}") from None
    model = assign_weights(model, state).eval()
    if num_latents is not None and num_latents != model.encoder.config.num_latents:
        model.resize_latents(num_latents)
    return model


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_header(path: Path) -> dict[str, torch.Tensor]:
    """The tensors a safetensors file declares, as meta tensors of their shape and dtype (reads the header only),
    after checking that the header is well formed and every tensor lies inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if length < 2 or 8 + length > size:
            raise ValueError(f"{path} is not a valid safetensors file: truncated or corrupt header")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path} is not a valid safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a valid safetensors file: its header is not a JSON object")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path} is not a valid safetensors file: bad header entry for {name!r}") from None
        if min(shape, default=0) < 0 or not 0 <= start <= end <= size - 8 - length:
            raise ValueError(f"{path} is not a valid safetensors file: {name!r} lies outside the file")
        out[name] = torch.empty(shape, dtype=dtype, device="meta")
    return out


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


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
