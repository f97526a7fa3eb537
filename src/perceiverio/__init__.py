"""perceiverio: Perceiver IO (Jaegle et al., 2021) in PyTorch, faithful to DeepMind's release."""

from .adapters import AudioAdapterConfig, ImageAdapterConfig, LabelAdapterConfig
from .core import DecoderConfig, EncoderConfig, PerceiverConfig, PerceiverIO, PerceiverIOConfig, set_value_checks
from .data import ByteMaskingCollator, WholeWordMaskingCollator
from .tasks import (
    CausalLanguageModel,
    CausalLanguageModelConfig,
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
from .tokenizer import BatchEncoding, ByteTokenizer
from .weights import registry as _registry  # noqa: F401  (imported for its effect: installs the weight methods)

__version__ = "0.1.0"

__all__ = [
    "AudioAdapterConfig",
    "BatchEncoding",
    "ByteMaskingCollator",
    "ByteTokenizer",
    "CausalLanguageModel",
    "CausalLanguageModelConfig",
    "DecoderConfig",
    "EncoderConfig",
    "ImageAdapterConfig",
    "ImageClassifier",
    "ImageClassifierConfig",
    "LabelAdapterConfig",
    "MaskedLanguageModel",
    "MaskedLanguageModelConfig",
    "MultimodalAutoencoder",
    "MultimodalAutoencoderConfig",
    "MultitaskClassifier",
    "MultitaskClassifierConfig",
    "OpticalFlow",
    "OpticalFlowConfig",
    "PerceiverConfig",
    "PerceiverIO",
    "PerceiverIOConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "SetModel",
    "SetModelConfig",
    "WholeWordMaskingCollator",
    "set_value_checks",
]
