"""What every task module's steps share: reading batch entries, logging training values, and the evaluation loop
that ``validate`` and ``test`` both run.

``test`` runs a task's ``validation_step`` over the test data and logs its metrics under ``test/`` instead of
``val/`` (``test/acc``, ``test/epe``, ...), so every task evaluates the same way on either split.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import PerceiverTask
from .metrics import RatioMetric


def batch_value(batch: Any, key: str, default: Any = None) -> Any:
    """``batch[key]``, or ``default`` when the batch has no such entry (or holds None there)."""
    try:
        value = batch[key]
    except (KeyError, AttributeError, TypeError, IndexError):
        return default
    return default if value is None else value


def require(batch: Any, key: str, what: str) -> Any:
    """``batch[key]``; a ValueError naming the expected key and the keys present when it is missing."""
    value = batch_value(batch, key)
    if value is None:
        got = sorted(batch.keys()) if hasattr(batch, "keys") else f"a {type(batch).__name__}"
        raise ValueError(f"{what} batches must be dicts with the key {key!r}; got {got}")
    return value


class EvaluatedTask(PerceiverTask):
    """A :class:`PerceiverTask` whose ``validation_step``/``on_validation_epoch_end`` also serve ``test``."""

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
