"""Lightning module of optical flow (paper §4.2)."""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.flow import OpticalFlow, OpticalFlowConfig
from .evaluation import EvaluatedTask, batch_value, require
from .metrics import RatioMetric, epe_stats


class OpticalFlowTask(EvaluatedTask):
    """Optical flow (§4.2): loss = mean end-point error (EPE, pixels) over valid pixels.

    Batch: ``{"frames" [B, 2, 3, H, W] in [-1, 1], "flow" [B, 2, H, W] in pixels, optional "valid" [B, H, W]
    bool}``. Validation frames of the training size (or smaller) go through the model at once; larger ones are
    tiled as in the official evaluation (:meth:`~perceiverio.tasks.flow.OpticalFlow.predict`). Logs ``train/loss``
    (= ``train/epe``), ``val/epe`` (averaged over every valid pixel of the validation set) and ``val/zero_epe``,
    the EPE of predicting no motion over the same pixels (the mean ground-truth flow magnitude: a model must score
    below it to have learnt anything). ``test`` logs the same as ``test/epe`` and ``test/zero_epe``.
    """

    config_class, default_config = OpticalFlowConfig, OpticalFlowConfig.tiny

    def __init__(self, config: OpticalFlowConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._setup_model(OpticalFlow(self.model_config))
        self.val_epe = RatioMetric()
        self.val_zero_epe = RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        frames, flow = require(batch, "frames", "flow"), require(batch, "flow", "flow")
        total, count = epe_stats(self(frames), flow, batch_value(batch, "valid"))
        loss = total / count.clamp(min=1)
        self.log_train({"train/loss": loss, "train/epe": loss}, frames.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        frames, flow = require(batch, "frames", "flow"), require(batch, "flow", "flow")
        h, w = frames.shape[-2:]
        th, tw = self.model.config.tile
        prediction = self.model.predict(frames) if (h >= th and w >= tw and (h, w) != (th, tw)) else self(frames)
        valid = batch_value(batch, "valid")  # [B, H, W] bool or None
        self.val_epe.update(*epe_stats(prediction, flow, valid))
        self.val_zero_epe.update(*epe_stats(torch.zeros_like(flow), flow, valid))

    def on_validation_epoch_end(self) -> None:
        self.log_metrics({"val/epe": self.val_epe, "val/zero_epe": self.val_zero_epe}, prog_bar=("val/epe",))
