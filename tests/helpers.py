"""Helpers shared by several test files (``tests`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import lightning as L
import pytest


def one_line_error(fn, *match: str) -> str:
    """Call ``fn``; it must raise a one-line ValueError containing every string of ``match``. Returns the message."""
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


def cpu_trainer(**kwargs) -> L.Trainer:
    """A quiet single-CPU Lightning trainer (no logger, checkpoints, bar, summary or validation) with overrides."""
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    return L.Trainer(**{**options, **kwargs})
