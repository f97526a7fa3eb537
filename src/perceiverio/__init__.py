"""perceiverio: Perceiver IO (Jaegle et al., 2021) in PyTorch, faithful to DeepMind's release."""

from .adapters import AudioAdapterConfig, ImageAdapterConfig, LabelAdapterConfig
from .core import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig
from .tasks import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultimodalAutoencoder,
    MultimodalAutoencoderConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    OpticalFlow,
    OpticalFlowConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    SetModel,
    SetModelConfig,
)
from .weights import registry as _registry  # noqa: F401  (installs the weight methods)
from .tokenizer import BatchEncoding, ByteTokenizer
from .data import ByteMaskingCollator, WholeWordMaskingCollator

__version__ = "0.1.0"

__all__ = [
    "AudioAdapterConfig", "BatchEncoding", "ByteMaskingCollator", "ByteTokenizer", "DecoderConfig", "EncoderConfig",
    "ImageAdapterConfig",
    "ImageClassifier", "ImageClassifierConfig", "LabelAdapterConfig", "MaskedLanguageModel",
    "MaskedLanguageModelConfig", "MultimodalAutoencoder", "MultimodalAutoencoderConfig", "MultitaskClassifier",
    "MultitaskClassifierConfig", "OpticalFlow", "OpticalFlowConfig", "PerceiverIO", "PerceiverIOConfig",
    "SequenceClassifier", "SequenceClassifierConfig", "SetModel", "SetModelConfig", "WholeWordMaskingCollator",
]
