"""Task models: each composes an input adapter, the core and output queries."""

from .language import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)

__all__ = [
    "MaskedLanguageModel", "MaskedLanguageModelConfig", "MultitaskClassifier", "MultitaskClassifierConfig",
    "SequenceClassifier", "SequenceClassifierConfig",
]
