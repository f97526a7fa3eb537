"""Lightning module of image classification (paper §4.5)."""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.image import ImageClassifier, ImageClassifierConfig
from .augment import ImageAugmentation
from .evaluation import EvaluatedTask, batch_value, class_probabilities, require
from .metrics import RatioMetric, classification_stats


class ImageClassificationTask(EvaluatedTask):
    """Image classification with the paper's ImageNet recipe (§4.5).

    Batch: ``{"images" [B, C, H, W] float, "labels" [B] long}``. Training batches (only) are augmented on the
    device (:class:`~perceiverio.training.augment.ImageAugmentation`): random flips and shifts (``flip``,
    ``translate``), then with kornia RandAugment (images must then be in [0, 1]; magnitude on the paper's 0–10
    scale), MixUp (first half of the batch) and CutMix (second half) into class probabilities.
    ``label_smoothing`` (a field of the model config) applies to the training loss.

    Logs ``train/loss``; ``val/loss`` (plain cross-entropy, no smoothing) and ``val/acc``.
    """

    config_class, default_config = ImageClassifierConfig, ImageClassifierConfig.tiny

    def __init__(
        self,
        config: ImageClassifierConfig | None = None,
        *,
        randaugment: bool = False,
        randaugment_ops: int = 4,
        randaugment_magnitude: int = 5,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        flip: bool = False,
        translate: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config,
            randaugment=randaugment,
            randaugment_ops=randaugment_ops,
            randaugment_magnitude=randaugment_magnitude,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            flip=flip,
            translate=translate,
            **kwargs,
        )
        config = self.model_config
        self._setup_model(ImageClassifier(config))
        self.augment = ImageAugmentation(
            config.num_classes,
            randaugment,
            randaugment_ops,
            randaugment_magnitude,
            mixup_alpha,
            cutmix_alpha,
            flip=flip,
            translate=translate,
        )
        self.val_loss, self.val_acc = RatioMetric(), RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = require(batch, "images", "image"), require(batch, "labels", "image")
        images, targets = self.augment(images, labels)
        out = self(images, labels=targets)
        self.log_train({"train/loss": out.loss}, images.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = require(batch, "images", "image"), require(batch, "labels", "image")
        nats, correct, count = classification_stats(self(images).logits, labels)
        self.val_loss.update(nats, count)
        self.val_acc.update(correct, count)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "classes", "index" [B], "probs" [B, K]}`` (softmax of the logits)."""
        images = require(batch, "images", "image")
        probs = class_probabilities(self(images).logits)
        return {"kind": "classes", "index": batch_value(batch, "index"), "probs": probs}

    def on_validation_epoch_end(self) -> None:
        self.log_metrics({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=("val/acc",))
