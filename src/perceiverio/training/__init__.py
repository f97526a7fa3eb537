"""Training: the Lightning task modules (:mod:`.lightning_modules`, on the base :class:`PerceiverTask` of
:mod:`.base`), optimiser recipes, callbacks, metrics and augmentation. The data modules live in
:mod:`perceiverio.data`.

Lightning is imported on first use of a name, so ``import perceiverio`` (inference, conversion) stays light: torch
only.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExportCallback": "callbacks",
    "ProgressLog": "callbacks",
    "OptimizerConfig": "base",
    "PerceiverTask": "base",
    "ImageClassificationTask": "lightning_modules",
    "MaskedLanguageModelTask": "lightning_modules",
    "MultimodalAutoencodingTask": "lightning_modules",
    "MultitaskClassificationTask": "lightning_modules",
    "OpticalFlowTask": "lightning_modules",
    "SequenceClassificationTask": "lightning_modules",
    "StepInBackward": "optim",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
