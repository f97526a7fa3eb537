"""perceiverio: Perceiver IO (Jaegle et al., 2021) in PyTorch, faithful to DeepMind's release."""

from .core import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig
from .tasks import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from .tokenizer import BatchEncoding, ByteTokenizer
from .training import WholeWordMaskingCollator

__version__ = "0.1.0"

__all__ = [
    "BatchEncoding", "ByteTokenizer", "DecoderConfig", "EncoderConfig", "MaskedLanguageModel",
    "MaskedLanguageModelConfig", "MultitaskClassifier", "MultitaskClassifierConfig", "PerceiverIO",
    "PerceiverIOConfig", "SequenceClassifier", "SequenceClassifierConfig", "WholeWordMaskingCollator",
]
