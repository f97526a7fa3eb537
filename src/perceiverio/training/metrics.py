"""Metrics of the training tasks, as pure functions plus one accumulator.

Every dataset-level metric is a ratio of sums (``sum / count`` over every batch of every process), never a mean of
per-batch means: :class:`RatioMetric` keeps the two sums as ``torchmetrics`` states (summed across processes under
DDP) in float64.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from ..tasks.outputs import IGNORE_INDEX

LN2 = math.log(2.0)


class RatioMetric(Metric):
    """``scale · Σ total / Σ count`` over the updates (and processes); NaN before any count."""

    full_state_update = False

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor | float, count: torch.Tensor | float) -> None:
        # out of place: states reset under inference mode (trainer.validate) must stay updatable in fit
        self.total = self.total + torch.as_tensor(total, dtype=torch.float64, device=self.total.device).detach().sum()
        self.count = self.count + torch.as_tensor(count, dtype=torch.float64, device=self.count.device).detach().sum()

    def compute(self) -> torch.Tensor:
        if self.count <= 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.total.device)
        return self.total / self.count * self.scale


def token_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ cross-entropy in nats, Σ correct, count)`` over targets != -100 (``logits [..., V]``, ``targets [...]``)."""
    keep = targets != IGNORE_INDEX
    flat, t = logits.reshape(-1, logits.shape[-1])[keep.reshape(-1)].float(), targets[keep]
    nats = torch.nn.functional.cross_entropy(flat, t.long(), reduction="sum") if t.numel() else flat.new_zeros(())
    correct = (flat.argmax(-1) == t).sum()
    return nats, correct, keep.sum()


def classification_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ cross-entropy, Σ correct, count)`` of ``logits [B, K]`` against class ids ``[B]`` (-100 ignored)."""
    return token_stats(logits, labels)


def end_point_error(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel end-point error ``‖flow − target‖₂`` of ``[B, 2, H, W]`` flows -> ``[B, H, W]``."""
    if flow.shape != target.shape or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"flow and target must both be [B, 2, H, W], got {tuple(flow.shape)} and {tuple(target.shape)}"
        )
    return (flow.float() - target.float()).square().sum(1).sqrt()


def epe_stats(
    flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ EPE, number of pixels)`` over valid pixels (``valid [B, H, W]`` bool; None: every pixel)."""
    epe = end_point_error(flow, target)
    if valid is None:
        return epe.sum(), torch.tensor(epe.numel(), device=epe.device)
    if tuple(valid.shape) != tuple(epe.shape):
        raise ValueError(f"valid must be [B, H, W] = {list(epe.shape)}, got {list(valid.shape)}")
    valid = valid.bool()
    return (epe * valid).sum(), valid.sum()


def psnr(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example PSNR in dB, ``10·log10(R² / MSE)``, with the data range ``R = max − min`` of each example's
    target (so the value does not depend on how the data were scaled or shifted).

    Returns ``(psnr [B], defined [B] bool)``: an example whose target is constant (R = 0, e.g. silent audio) has
    no defined PSNR and is excluded by the caller. MSE is clamped at ``eps`` (a perfect reconstruction is finite).
    """
    b = target.shape[0]
    p, t = prediction.reshape(b, -1).float(), target.reshape(b, -1).float()
    if p.shape != t.shape:
        raise ValueError(
            f"prediction and target must have the same number of values per example, got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    data_range = t.amax(1) - t.amin(1)
    mse = (p - t).square().mean(1).clamp(min=eps)
    defined = data_range > 0
    value = 10.0 * torch.log10(data_range.clamp(min=eps).square() / mse)
    return torch.where(defined, value, torch.zeros_like(value)), defined
