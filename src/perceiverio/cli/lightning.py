"""``perceiverio fit``/``validate``/``test``/``predict``: LightningCLI over the task modules and data modules, with
our callbacks (checkpoint, export, progress, non-finite guard, prediction writer), the packaged main-job config as
default, and every error of the user's making as one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import CKPT_NAMES, CONFIG_FLAGS, DEFAULT_ROOT, first_line, packaged_config


def run(argv: list[str]) -> None:
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from ..training.base import PerceiverTask
    from ..training.callbacks import ExportCallback, NonFiniteError, NonFiniteGuard, ProgressLog
    from ..training.outputs import check_outputs
    from ..training.predictions import PredictionWriter
    from ..training.trainer_options import check_trainer_options

    class PerceiverCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
            parser.add_lightning_class_args(ExportCallback, "export")
            parser.add_lightning_class_args(ProgressLog, "progress")
            parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
            parser.add_lightning_class_args(PredictionWriter, "predictions")

        def before_instantiate_classes(self) -> None:
            command = self.config.get("subcommand")
            trainer = self.config[command].trainer if command else self.config.trainer
            check_trainer_options(trainer)
            if command == "predict":
                check_predict_input(self.config[command].get("data"))
                if self.config[command].get("return_predictions") is None:  # written to files, not kept in memory
                    self.config[command]["return_predictions"] = False
            root_loggers(trainer)

        def before_fit(self) -> None:
            check_outputs(self.trainer, fitting=True)

        def before_validate(self) -> None:
            check_outputs(self.trainer, fitting=False)

        def before_test(self) -> None:
            check_outputs(self.trainer, fitting=False)

        def before_predict(self) -> None:
            check_outputs(self.trainer, fitting=False)

        def instantiate_trainer(self, **kwargs):
            try:
                trainer = super().instantiate_trainer(**kwargs)
            except (TypeError, MemoryError, OverflowError) as e:  # Lightning's checks of the --trainer options
                raise ValueError(f"the --trainer options do not make a Trainer: {first_line(e)}") from None
            _share_log_version(trainer)
            return trainer

        def _parse_ckpt_path(self) -> None:
            # LightningCLI's hook that reads --ckpt_path's hyper-parameters into the config. It hands them to the
            # parser as the model itself, which fails for a subclass-mode model; ours are the task module's
            # init_args (plain data, see perceiverio.training.base), so they go under init_args of the configured
            # task class.
            command = self.config.get("subcommand")
            ckpt_path = command and self.config[command].get("ckpt_path")
            ckpt_path = ckpt_path and str(ckpt_path)
            if not ckpt_path or "://" in ckpt_path or ckpt_path.split(":")[0] in CKPT_NAMES:
                return  # Lightning's own names for this run's checkpoints, its registry, remote files (fsspec)
            if not Path(ckpt_path).is_file():
                what = "a folder" if Path(ckpt_path).is_dir() else "not found"
                raise ValueError(f"--ckpt_path {ckpt_path!r} is {what}; expected a .ckpt file (or one of {CKPT_NAMES})")
            try:
                checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
            except Exception as e:  # noqa: BLE001  (torch's unpickling and zip errors: a damaged or foreign file)
                why = {
                    "EOFError": "it is empty or cut short",
                    "UnpicklingError": "not a torch file of tensors and plain data (nothing else is unpickled)",
                }.get(type(e).__name__, first_line(e))
                raise ValueError(f"--ckpt_path {ckpt_path!r} is not a readable checkpoint: {why}") from None
            if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
                raise ValueError(f"--ckpt_path {ckpt_path!r} is not a Lightning checkpoint (no state_dict)")
            hparams = checkpoint.get("hyper_parameters") or {}
            hparams.pop("_instantiator", None)
            if hparams:
                model = {"class_path": self.config[command].model.class_path, "init_args": hparams}
                self.config = self.parser.parse_object({command: {"model": model}}, self.config)

    if argv[0] in ("fit", "validate", "test", "predict") and not any(a.split("=")[0] in CONFIG_FLAGS for a in argv[1:]):
        argv = [argv[0], "--config", str(packaged_config("mlm")), *argv[1:]]
    from jsonargparse import ArgumentError

    # LightningCLI reads sys.argv, and Lightning's DDP launcher restarts workers from it: give it the full command
    saved, sys.argv = sys.argv, [sys.argv[0] if sys.argv and sys.argv[0] else "perceiverio", *argv]
    try:
        PerceiverCLI(
            PerceiverTask,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            # the best accelerator found (GPUs, all of them, else the CPU): see docs/gpu.md; a progress bar on a
            # terminal, plain ProgressLog lines in a log file or CI output
            trainer_defaults={
                "default_root_dir": DEFAULT_ROOT,
                "accelerator": "auto",
                "devices": "auto",
                "enable_progress_bar": sys.stderr.isatty(),
            },
            parser_kwargs={"exit_on_error": False},
        )
    except ArgumentError as e:  # a config typo, a wrong type: one line, no usage dump
        old = next((a for a in argv if a.startswith(("--model.model.", "--model.init_args.model."))), None)
        if old is not None:  # the spelling before the task modules took their model config's fields directly
            new = "--model." + old.split(".model.", 1)[1]
            raise SystemExit(
                f"perceiverio {argv[0]}: {old.split('=')[0]} is now {new.split('=')[0]} (the model "
                "config's fields are options of the task module)"
            ) from None
        raise SystemExit(f"perceiverio {argv[0]}: {first_line(e)} (see --help or --print_config)") from None
    except (ValueError, FileNotFoundError, NonFiniteError, MisconfigurationException) as e:
        # bad data or config, unwritable folders, divergence, a trainer option Lightning refuses
        raise SystemExit(f"perceiverio {argv[0]}: {first_line(e)}") from None
    finally:
        sys.argv = saved


def check_predict_input(data_config) -> None:
    """Before ``predict`` creates any folder: a ValueError when the data module takes a ``predict_path`` and none is
    given (the data module itself says so too, later, for data modules built in Python)."""
    init = data_config.get("init_args") if hasattr(data_config, "get") else None
    if init is not None and "predict_path" in init and init.get("predict_path") is None:
        name = str(data_config.get("class_path", "the data module")).rsplit(".", 1)[-1]
        raise ValueError(
            f"{name} has no predict_path: give --data.predict_path with the files to predict on (a file or a "
            "folder; see docs/inference.md)"
        )


def root_loggers(trainer_config) -> None:
    """Put the loggers that name no folder of their own under ``trainer.default_root_dir``: those whose
    ``save_dir`` is unset or the default root ``runs`` (the packaged configs' value). Their checkpoints, the export
    and the saved config.yaml follow them into the log folder."""
    root = trainer_config.get("default_root_dir")
    loggers = trainer_config.get("logger")
    if root is None or loggers in (None, True, False):
        return
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = logger.get("init_args") if hasattr(logger, "get") else None
        if init is None or "save_dir" not in init:
            continue
        save_dir = init.get("save_dir")
        if save_dir is None or os.path.normpath(str(save_dir)) == DEFAULT_ROOT:
            init["save_dir"] = root


def _share_log_version(trainer) -> None:
    """Make every logger of a run write into the first logger's ``version_N`` folder (TensorBoard events and
    ``metrics.csv`` side by side) instead of each picking its own next free version."""
    loggers = list(trainer.loggers)
    if len(loggers) < 2 or not hasattr(loggers[0], "version"):
        return
    version = loggers[0].version
    for logger in loggers[1:]:
        if hasattr(logger, "_version") and getattr(logger, "_name", None) == getattr(loggers[0], "_name", None):
            logger._version = version
