"""Callbacks: export of the trained model in our Lightning-free checkpoint format."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class ExportCallback(L.Callback):
    """Write the task model as ``model.safetensors`` + ``config.json`` after every validation during ``fit`` and at
    the end of ``fit``, into ``dirpath`` (default ``<trainer.log_dir>/model``, or ``<default_root_dir>/model``
    without a logger). Reload with ``<ModelClass>.from_pretrained(dirpath)``: no Lightning needed.

    Each file is replaced atomically (written to a temporary file, then renamed), so a reader never sees a partial
    file; the config is the same at every export, so the pair is always consistent. Only the global-zero process
    writes (the DDP replicas hold identical weights). Resume training from Lightning's own ``last.ckpt``
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
        if trainer.is_global_zero:
            pl_module.export(directory)
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
