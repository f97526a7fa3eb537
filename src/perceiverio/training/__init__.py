"""Training: Lightning task modules, optimiser recipes, collators, callbacks.

Lightning is imported on first use of a Lightning-based name, so ``import perceiverio`` (inference, conversion)
stays light: torch only.
"""

from __future__ import annotations

import importlib
from typing import Any

from .masking import ByteMaskingCollator, WholeWordMaskingCollator

_LAZY = {
    "ExportCallback": "callbacks", "ProgressLog": "callbacks", "OptimizerConfig": "module", "PerceiverTask": "module",
    "ImageClassificationTask": "tasks", "MaskedLanguageModelTask": "tasks", "MultimodalAutoencodingTask": "tasks",
    "MultitaskClassificationTask": "tasks", "OpticalFlowTask": "tasks", "SequenceClassificationTask": "tasks",
    "StepInBackward": "optim",
}

__all__ = ["ByteMaskingCollator", "WholeWordMaskingCollator", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
