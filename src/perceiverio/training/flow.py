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
        prediction = self.flow(frames)
        valid = batch_value(batch, "valid")  # [B, H, W] bool or None
        self.val_epe.update(*epe_stats(prediction, flow, valid))
        self.val_zero_epe.update(*epe_stats(torch.zeros_like(flow), flow, valid))

    def flow(self, frames: torch.Tensor) -> torch.Tensor:
        """The flow of ``frames`` ``[B, 2, 3, H, W]``: tiled (:meth:`~perceiverio.tasks.flow.OpticalFlow.predict`)
        when the frames are larger than the model's tile, else through the model at once."""
        h, w = frames.shape[-2:]
        th, tw = self.model.config.tile
        return self.model.predict(frames) if (h >= th and w >= tw and (h, w) != (th, tw)) else self(frames)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "flow", "index" [B], "flow" [B, 2, H, W]}`` in pixels, with the ground truth ``"truth"`` and
        ``"valid"`` when the batch has them."""
        frames = require(batch, "frames", "flow")
        out = {"kind": "flow", "index": batch_value(batch, "index"), "flow": self.flow(frames).float().cpu()}
        if batch_value(batch, "flow") is not None:
            out["truth"] = batch["flow"].float().cpu()
            valid = batch_value(batch, "valid")
            out["valid"] = valid.cpu() if valid is not None else None
        return out

    def on_validation_epoch_end(self) -> None:
        self.log_metrics({"val/epe": self.val_epe, "val/zero_epe": self.val_zero_epe}, prog_bar=("val/epe",))
