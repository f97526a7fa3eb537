"""Build a model without initialising it, then give it its weights.

Every loader builds the model on the meta device (:func:`empty_model`: shapes only, no memory, the initialisers
touch nothing) and hands it the loaded tensors themselves (:func:`assign_weights`, ``load_state_dict(assign=True)``)
instead of copying them into freshly initialised parameters. Modules that reference another module's parameter
without registering it (the MLM's output adapter reads ``input_adapter.token_embedding``) keep the reference: they
hold the module, whose parameter is replaced in place.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def empty_model(cls: type, config: Any) -> nn.Module:
    """``cls.from_config(config)`` on the meta device: every parameter and buffer has its shape and dtype, none has
    storage, and no initialiser does real work."""
    with torch.device("meta"):
        return cls.from_config(config)


def check_fits(model: nn.Module, state: Mapping[str, Any], where: str, config_from: str = "") -> None:
    """ValueError naming ``where`` (the file) unless ``state`` has exactly the model's keys, each a tensor of the
    declared shape and of a compatible kind (floating for floating tensors); reads shapes only. ``config_from``
    names where the model's config came from (a mismatch may be the config's fault)."""
    config = f"the model's config ({config_from})" if config_from else "the model's config"
    declared = model.state_dict()
    missing = sorted(set(declared) - set(state))
    unexpected = sorted(set(state) - set(declared))
    if missing or unexpected:
        raise ValueError(
            f"{where} does not fit {type(model).__name__} as {config} declares it: "
            f"{len(missing)} missing keys {missing[:4]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:4]}"
        )
    for name, target in declared.items():
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{where}: {name} must be a tensor, got {type(tensor).__name__}")
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(f"{where}: {name} has shape {list(tensor.shape)}, {config} declares {list(target.shape)}")
        if target.dtype.is_floating_point and not tensor.dtype.is_floating_point:
            raise ValueError(f"{where}: {name} must be floating point, got dtype {tensor.dtype}")


def assign_weights(model: nn.Module, state: Mapping[str, torch.Tensor], copy: bool = False) -> nn.Module:
    """Give ``model`` (built by :func:`empty_model`) exactly the tensors of ``state`` (every key, strict).

    Tensors are cast to the dtype the model declares (a float16 checkpoint gives a float32 model, as copying would);
    ``copy=True`` clones them first (for tensors that still belong to someone else, e.g. a live transformers
    model's state dict), and a tensor given under two names is cloned for the second, so no two parameters share
    memory by accident. Raises RuntimeError if anything is left on the meta device afterwards.
    """
    declared = model.state_dict()
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    ready = {}
    for name, tensor in state.items():
        target = declared.get(name)
        if target is not None and tensor.dtype != target.dtype:
            tensor = tensor.to(target.dtype)
        elif copy or (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride())) in seen:
            tensor = tensor.clone()
        seen.add((tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride())))
        ready[name] = tensor
    model.load_state_dict(ready, strict=True, assign=True)
    left = [name for name, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(
            f"internal: {type(model).__name__} has tensors no checkpoint entry filled (still on the "
            f"meta device): {left[:6]}"
        )
    return model
