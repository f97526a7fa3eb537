"""Input adapters and output adapters, one module per modality."""

from .audio import AudioAdapterConfig, AudioInputAdapter
from .image import ImageAdapterConfig, ImageInputAdapter
from .label import LabelAdapterConfig, LabelInputAdapter
from .text import TextInputAdapter, TiedTokenOutputAdapter

__all__ = [
    "AudioAdapterConfig",
    "AudioInputAdapter",
    "ImageAdapterConfig",
    "ImageInputAdapter",
    "LabelAdapterConfig",
    "LabelInputAdapter",
    "TextInputAdapter",
    "TiedTokenOutputAdapter",
]
