"""Helpers shared by several test files (``tests`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F


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


def warp_frame(frame2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample frame 2 [3, H, W] at x + flow(x) (bilinear, pixel centres at integer coordinates), float64."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    x, y = xs + flow[0].double(), ys + flow[1].double()
    grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], -1)[None]
    return F.grid_sample(frame2[None].double(), grid, mode="bilinear", align_corners=True)[0]
