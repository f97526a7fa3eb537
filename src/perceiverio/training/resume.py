"""Exact resume: the random generators' states travel in every checkpoint.

:class:`RandomStates` (a callback every task module adds through ``configure_callbacks``) saves the states of the
global generators (torch CPU, the current CUDA device's when CUDA is in use, numpy, Python ``random``) in each
checkpoint and, in a run resumed from it, restores them just before the first training batch (``on_train_batch_start``
runs before the augmentation and the forward pass that draw from them). Together with the position of the training
loader (:class:`~perceiverio.data.sampling.ResumableLoader`), a run resumed from any checkpoint, also one written in
the middle of an epoch, draws the same batches, augmentation, dropout and masks as the uninterrupted run.

Validation during ``fit`` ends with the generators in the states of the end of the last training batch, so the
training draws do not depend on when, or whether, validation ran (a resumed run skips the validation due right after
the checkpointed batch); Lightning does the same around its sanity check.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn


def random_states() -> dict[str, Any]:
    """The states of the global generators as tensors and plain data (loadable with ``weights_only=True``)."""
    key, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": str(key),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Restore the states of :func:`random_states` (a CUDA state only where CUDA is available)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["key"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class RandomStates(L.Callback):
    """Saves the global generators' states in checkpoints and restores them in a resumed run before its first
    training batch; validation during ``fit`` ends with the states of the end of the last training batch.

    Under DDP the checkpoint holds rank 0's states and every rank restores them: exact when the ranks' generators
    were equal (the same seed on every rank and the same draws, as with ``seed_everything`` and dropout or
    augmentation of same-shaped batches)."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None  # loaded from a checkpoint, restored at the next training batch
        self.after_step: dict[str, Any] | None = None  # the states at the end of the last training batch

    def state_dict(self) -> dict[str, Any]:
        return random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.pending is not None:
            set_random_states(self.pending)
            self.pending = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.after_step = random_states()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Undo validation's draws (also those of creating its loader's iterator, before ``on_validation_start``):
        a run resumed from a checkpoint of the batch before this validation skips it."""
        if trainer.state.fn == TrainerFn.FITTING and self.after_step is not None:
            set_random_states(self.after_step)
