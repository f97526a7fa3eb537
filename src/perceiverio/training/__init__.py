"""Training: Lightning task modules, optimiser recipes, collators, callbacks."""

from .masking import ByteMaskingCollator, WholeWordMaskingCollator

__all__ = ["ByteMaskingCollator", "WholeWordMaskingCollator"]

from .callbacks import ExportCallback
from .module import OptimizerConfig, PerceiverTask
from .tasks import (ImageClassificationTask, MaskedLanguageModelTask, MultimodalAutoencodingTask,
                    MultitaskClassificationTask, OpticalFlowTask, SequenceClassificationTask)

__all__ += ["ExportCallback", "ImageClassificationTask", "MaskedLanguageModelTask", "MultimodalAutoencodingTask",
            "MultitaskClassificationTask", "OpticalFlowTask", "OptimizerConfig", "PerceiverTask",
            "SequenceClassificationTask"]
