"""Callbacks: export of the trained model in our Lightning-free checkpoint format (gathered from every process
under sharded strategies such as FSDP); plain progress lines."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

MODEL_PREFIX = "model."  # the task model's keys in the task module's state dict


def _is_sharded(value: Any) -> bool:
    """A shard of a tensor (FSDP's sharded state dicts, DTensor parameters) rather than the whole tensor."""
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor) or type(value).__name__ == "ShardedTensor"


def gather_model_state(trainer: L.Trainer) -> dict[str, torch.Tensor] | None:
    """The task model's full state dict (the keys of ``pl_module.model.state_dict()``) on global rank 0; None on
    the other processes. Every process must call this: under FSDP gathering the shards is a collective operation.

    The state comes from Lightning's ``trainer.strategy.lightning_module_state_dict()``: the module's own state dict
    for single-device and DDP runs, and for ``FSDPStrategy`` (``--trainer.strategy fsdp``, whose default
    ``state_dict_type="full"`` gathers every shard to rank 0, offloaded to CPU) a full dict on rank 0 and an empty one
    elsewhere. If the strategy hands out shards instead (``FSDPStrategy(state_dict_type="sharded")``,
    ``ModelParallelStrategy``), they are gathered to rank 0 with PyTorch's distributed-checkpoint API
    (``get_model_state_dict(..., full_state_dict=True, cpu_offload=True)``) on the strategy's wrapped model."""
    strategy = trainer.strategy
    state = strategy.lightning_module_state_dict()
    if any(_is_sharded(v) for v in state.values()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(strategy.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not trainer.is_global_zero:
        return None
    return {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def save_model_with(model: nn.Module, weights: dict[str, torch.Tensor], directory: str | os.PathLike) -> Path:
    """Write ``model``'s class and config with ``weights`` (its full state dict) through the model's own
    ``save_pretrained``, without touching ``model`` (whose parameters may be shards). The weights go into a copy
    built on the meta device (no memory: the copy's tensors are ``weights`` themselves), or on the CPU when the
    model cannot be built on the meta device."""
    try:
        with torch.device("meta"):
            copy = type(model)(model.config)
    except Exception:  # a model whose construction reads values: build it for real (CPU memory of one model)
        copy = type(model)(model.config)
    missing, unexpected = copy.load_state_dict(weights, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(
            f"the gathered weights do not fit {type(model).__name__}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return copy.save_pretrained(directory)


class ExportCallback(L.Callback):
    """Write the task model as ``model.safetensors`` + ``config.json`` after every validation during ``fit`` and at
    the end of ``fit``, into ``dirpath`` (default ``<trainer.log_dir>/model``, or ``<default_root_dir>/model``
    without a logger). Reload with ``<ModelClass>.from_pretrained(dirpath)``: no Lightning needed.

    Every process takes part in gathering the weights (:func:`gather_model_state`: the strategy's own state dict, so
    FSDP's shards are gathered to rank 0); only the global-zero process writes. Each file is replaced atomically
    (written to a temporary file, then renamed), so a reader never sees a partial file; the config is the same at
    every export, so the pair is always consistent. Resume training from Lightning's own ``last.ckpt``
    (``ModelCheckpoint``), which also holds the optimiser and loop state.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__()
        self.dirpath = dirpath
        self.last_export: Path | None = None
        self._last: tuple[Path, int] | None = None

    def directory(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / "model"

    def export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        directory = self.directory(trainer)
        if (directory, trainer.global_step) == self._last:
            return  # already written after this step's validation: same weights
        self._last = (directory, trainer.global_step)
        weights = gather_model_state(trainer)  # on every process: a collective under FSDP
        if trainer.is_global_zero:
            save_model_with(pl_module.model, weights, directory)
            self.last_export = directory
            rank_zero_info(f"exported the model to {directory} (step {trainer.global_step})")
        trainer.strategy.barrier("perceiverio-export")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.export(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.export(trainer, pl_module)


def time_budget(trainer: L.Trainer) -> Timer | None:
    """The trainer's wall-time limit (the ``Timer`` that ``max_time`` adds), or None when it has none."""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return timer if timer is not None and timer.time_remaining() is not None else None


class ProgressLog(L.Callback):
    """Plain progress lines for logs that are not a terminal, where a progress bar redraws itself into one
    endless line: ``step 200/1000 (20%) loss 2.7142 lr 1.9e-03 | 41 s elapsed, ~164 s left`` every
    ``every_n_steps`` steps, and the validation metrics after each validation. Silent when the trainer shows its
    progress bar (``--trainer.enable_progress_bar true``); the CLI shows the bar on a terminal, these lines
    elsewhere."""

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__()
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._start: float | None = None
        self._start_step = 0

    def _active(self, trainer: L.Trainer) -> bool:
        return trainer.progress_bar_callback is None and trainer.is_global_zero

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._start_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not self._active(trainer) or step % self.every_n_steps or self._start is None:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        total = total if total and math.isfinite(total) else None
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss", outputs.get("loss") if isinstance(outputs, dict) else None)
        elapsed = time.perf_counter() - self._start
        done = step - self._start_step
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.1e}")
        left = elapsed / done * (total - step) if total and done else None
        timer = time_budget(trainer)
        if timer is not None:  # max_time: the budget may end the run first
            budget_left = max(timer.time_remaining(), 0.0)
            left = budget_left if left is None else min(left, budget_left)
        eta = f", ~{left:.0f} s left" if left is not None else ""
        print(" ".join(parts) + f" | {elapsed:.0f} s elapsed{eta}", flush=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer) or trainer.sanity_checking:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if vals:
            where = f" at step {trainer.global_step}" if trainer.training or trainer.state.fn == "fit" else ""
            print(f"validation{where}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(vals.items())), flush=True)
