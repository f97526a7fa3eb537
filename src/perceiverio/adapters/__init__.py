"""Input adapters and output adapters, one module per modality."""

from .text import TextInputAdapter, TiedTokenOutputAdapter

__all__ = ["TextInputAdapter", "TiedTokenOutputAdapter"]
