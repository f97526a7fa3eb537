"""Training utilities (data collators now; Lightning modules come with the training issue)."""

from .masking import WholeWordMaskingCollator

__all__ = ["WholeWordMaskingCollator"]
