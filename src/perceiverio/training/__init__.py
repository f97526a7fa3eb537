"""Training: the Lightning task modules (:mod:`.language`, :mod:`.causal`, :mod:`.image`, :mod:`.flow`,
:mod:`.multimodal`, on the base :class:`PerceiverTask` of :mod:`.base` and the shared steps of :mod:`.evaluation`),
optimiser recipes, callbacks, metrics and augmentation. The data modules live in :mod:`perceiverio.data`.

Lightning is imported on first use of a name, so ``import perceiverio`` (inference, conversion) stays light: torch
only.
"""

from __future__ import annotations

from ..data.lazy import lazy_getattr

_LAZY = {
    "CausalLanguageModelTask": "causal",
    "ExportCallback": "callbacks",
    "NonFiniteError": "callbacks",
    "NonFiniteGuard": "callbacks",
    "ProgressLog": "callbacks",
    "RandomStates": "resume",
    "OptimizerConfig": "base",
    "PerceiverTask": "base",
    "ImageClassificationTask": "image",
    "MaskedLanguageModelTask": "language",
    "MultimodalAutoencodingTask": "multimodal",
    "MultitaskClassificationTask": "language",
    "OpticalFlowTask": "flow",
    "SequenceClassificationTask": "language",
    "StepInBackward": "optim",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
