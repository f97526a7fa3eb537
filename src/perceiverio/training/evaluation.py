"""What every task module's steps share: reading batch entries, logging training values, the evaluation loop
that ``validate`` and ``test`` both run, and the check of the model's classes against the data's.

``predict`` (``perceiverio predict``) runs each task's ``predict_step`` on the data module's
``predict_dataloader`` (the user's files; :mod:`perceiverio.data.predict`); each step returns a dict with
``"kind"`` (what a writer writes: ``"classes"``, ``"regression"``, ``"multitask"``, ``"fill"``, ``"flow"`` or
``"reconstruction"``), the batch's ``"index"`` (positions in the dataset's ``names``) and CPU tensors
(:class:`~perceiverio.training.predictions.PredictionWriter` writes them).

``test`` runs a task's ``validation_step`` over the test data and logs its metrics under ``test/`` instead of
``val/`` (``test/acc``, ``test/epe``, ...), so every task evaluates the same way on either split.

Before ``fit``, ``validate`` or ``test`` runs a step, ``setup`` compares the number of classes the model predicts
(:meth:`EvaluatedTask.model_num_classes`, from the config's ``num_classes``) with the data module's
``num_classes``, when both are known, and raises a ValueError naming both numbers and the data's source on a
mismatch (instead of an index error in the loss after some steps).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch.trainer.states import TrainerFn

from .base import PerceiverTask
from .callbacks import time_budget
from .metrics import RatioMetric


def batch_value(batch: Any, key: str, default: Any = None) -> Any:
    """``batch[key]``, or ``default`` when the batch has no such entry (or holds None there)."""
    try:
        value = batch[key]
    except (KeyError, AttributeError, TypeError, IndexError):
        return default
    return default if value is None else value


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``[..., K]`` logits -> float32 probabilities (softmax) on the CPU, as predictions are written."""
    return logits.float().softmax(-1).cpu()


def require(batch: Any, key: str, what: str) -> Any:
    """``batch[key]``; a ValueError naming the expected key and the keys present when it is missing."""
    value = batch_value(batch, key)
    if value is None:
        got = sorted(batch.keys()) if hasattr(batch, "keys") else f"a {type(batch).__name__}"
        raise ValueError(f"{what} batches must be dicts with the key {key!r}; got {got}")
    return value


class EvaluatedTask(PerceiverTask):
    """A :class:`PerceiverTask` whose ``validation_step``/``on_validation_epoch_end`` also serve ``test``, and
    whose ``setup`` checks the model's classes against the data module's (:meth:`check_classes`)."""

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        self.check_classes(datamodule)

    def model_num_classes(self) -> int | None:
        """The number of classes the model predicts: its config's ``num_classes``; None (nothing to check) when the
        config has none, or for a regressor (``num_classes=1``)."""
        k = getattr(self.model_config, "num_classes", None)
        return k if isinstance(k, int) and k > 1 else None

    def check_classes(self, datamodule: Any) -> None:
        """A ValueError when the model's class count differs from ``datamodule.num_classes`` (when the model has
        one and the data module is given and knows its classes; reading it may load the data)."""
        expected = self.model_num_classes()
        if expected is None or datamodule is None:
            return
        found = getattr(datamodule, "num_classes", None)
        if not isinstance(found, int):
            return
        if found != expected:
            source = getattr(datamodule, "source", None) or repr(getattr(datamodule, "path", None))
            raise ValueError(
                f"the model predicts {expected} classes (num_classes={expected}) but the data "
                f"({type(datamodule).__name__}, {source}) has {found}; set the model's num_classes to {found} "
                "or give data with that many classes"
            )

    def on_train_start(self) -> None:
        self._train_clock = time.monotonic()

    def on_validation_epoch_start(self) -> None:
        """During fit (not the sanity check): log ``val/elapsed_s``, the wall time since training started (the
        trainer's ``max_time`` clock when it has one, which survives a resume), so validation curves can be drawn
        against time as well as steps."""
        trainer = self.trainer
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        timer = time_budget(trainer)
        start = getattr(self, "_train_clock", None)
        elapsed = timer.time_elapsed() if timer is not None else (time.monotonic() - start if start else 0.0)
        self.log("val/elapsed_s", float(elapsed), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()

    def metric_name(self, name: str) -> str:
        """``val/x`` -> ``test/x`` while testing (the same metrics, named after the split they measure)."""
        testing = self._trainer is not None and self.trainer.testing
        return "test/" + name[4:] if testing and name.startswith("val/") else name

    def log_metric(self, name: str, value: Any, prog_bar: bool = False) -> None:
        """Log one evaluation value (synchronised across processes) under its split's name."""
        self.log(self.metric_name(name), value, prog_bar=prog_bar, sync_dist=True)

    def log_train(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        """Log the step's training values (the first one on the progress bar) and the learning rate."""
        for i, (name, value) in enumerate(values.items()):
            self.log(name, value.detach(), on_step=True, on_epoch=False, prog_bar=i == 0, batch_size=batch_size)
        self.log_lr()

    def log_metrics(self, metrics: dict[str, RatioMetric], prog_bar: tuple[str, ...] = ()) -> dict[str, float]:
        """Compute (synchronised across processes), log the defined ones, reset; returns the values."""
        values = {}
        for name, metric in metrics.items():
            value = metric.compute()
            metric.reset()
            if torch.isfinite(value):
                values[name] = float(value)
                self.log_metric(name, values[name], prog_bar=name in prog_bar)
        return values
