"""Training: the Lightning task modules (:mod:`.lightning_modules`, on the base :class:`PerceiverTask` of
:mod:`.base`), optimiser recipes, callbacks, metrics and augmentation. The data modules live in
:mod:`perceiverio.data`.

Lightning is imported on first use of a name, so ``import perceiverio`` (inference, conversion) stays light: torch
only.
"""

from __future__ import annotations

from ..data.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _LAZY)
