"""Task models: each composes input adapters, the core and output queries."""

from .causal import CausalLanguageModel, CausalLanguageModelConfig, CausalLMOutput
from .flow import OpticalFlow, OpticalFlowConfig
from .image import ImageClassifier, ImageClassifierConfig
from .language import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from .multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from .sets import SetModel, SetModelConfig

__all__ = [
    "CausalLMOutput",
    "CausalLanguageModel",
    "CausalLanguageModelConfig",
    "ImageClassifier",
    "ImageClassifierConfig",
    "MaskedLanguageModel",
    "MaskedLanguageModelConfig",
    "MultimodalAutoencoder",
    "MultimodalAutoencoderConfig",
    "MultitaskClassifier",
    "MultitaskClassifierConfig",
    "OpticalFlow",
    "OpticalFlowConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "SetModel",
    "SetModelConfig",
]
