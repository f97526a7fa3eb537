"""The ``perceiverio`` command line.

    perceiverio fit [--config CONFIG.yaml] [--trainer.max_steps N] [--data.path P] ...   (LightningCLI)
    perceiverio validate --config CONFIG.yaml --ckpt_path runs/.../last.ckpt
    perceiverio convert hf NAME_OR_FOLDER OUT_DIR [--revision REV] [--official-masking] [--overwrite]
    perceiverio convert haiku PARAMS.pickle OUT_DIR [--task mlm|classifier|image|flow|multimodal] [--overwrite]
    perceiverio fill-mask MODEL_DIR --text "..." (--word WORD | --mask-char _)

``fit``/``validate``/``test`` without ``--config`` run the main job: byte-level masked language modelling on the
standard library's own reference text (``configs/mlm.yaml``). Configs follow LightningCLI/jsonargparse conventions
(``--print_config``, dotted overrides such as ``--model.encoder.num_latents 64``, ``--model.optimizer.lr 3e-4``,
``--data.batch_size 64``). Training runs on every GPU found, else on the CPU (``--trainer.accelerator``,
``--trainer.devices``; docs/gpu.md). Trained weights are exported as ``model.safetensors`` + ``config.json``
(loadable with ``Model.from_pretrained``) into ``<log dir>/model``; ``last.ckpt`` holds the trainer state for resume.
Every output (logs, checkpoints, the export, config.yaml) goes under ``--trainer.default_root_dir`` (``runs``) unless
an option names its folder; the folders are checked for writing before the first step. A NaN or infinite loss or
gradient stops ``fit`` with exit status 1 and no export (``--nonfinite.action skip`` skips such steps instead).
``convert`` refuses to replace a model in OUT_DIR without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
CONFIG_FLAGS = ("--config", "-c", "--model", "--model.class_path")
CKPT_NAMES = ("last", "best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself
DEFAULT_ROOT = "runs"  # trainer.default_root_dir: every output of fit goes under it unless an option names a folder
MODEL_FILES = ("config.json", "model.safetensors")


def packaged_config(name: str) -> Path:
    """Path of a YAML config shipped inside the package (``configs/<name>.yaml`` in the repository)."""
    path = Path(str(resources.files("perceiverio") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise SystemExit(f"perceiverio: no packaged config {name!r}")
    return path


# ------------------------------------------------------------------------------------------------ Lightning
def _lightning(argv: list[str]) -> None:
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from .training.base import PerceiverTask
    from .training.callbacks import ExportCallback, NonFiniteError, NonFiniteGuard, ProgressLog
    from .training.outputs import check_outputs
    from .training.trainer_options import check_trainer_options

    class PerceiverCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
            parser.add_lightning_class_args(ExportCallback, "export")
            parser.add_lightning_class_args(ProgressLog, "progress")
            parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")

        def before_instantiate_classes(self) -> None:
            command = self.config.get("subcommand")
            trainer = self.config[command].trainer if command else self.config.trainer
            check_trainer_options(trainer)
            root_loggers(trainer)

        def before_fit(self) -> None:
            check_outputs(self.trainer, fitting=True)

        def before_validate(self) -> None:
            check_outputs(self.trainer, fitting=False)

        def before_test(self) -> None:
            check_outputs(self.trainer, fitting=False)

        def instantiate_trainer(self, **kwargs):
            try:
                trainer = super().instantiate_trainer(**kwargs)
            except (TypeError, MemoryError, OverflowError) as e:  # Lightning's checks of the --trainer options
                raise ValueError(f"the --trainer options do not make a Trainer: {_first_line(e)}") from None
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
                }.get(type(e).__name__, _first_line(e))
                raise ValueError(f"--ckpt_path {ckpt_path!r} is not a readable checkpoint: {why}") from None
            if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
                raise ValueError(f"--ckpt_path {ckpt_path!r} is not a Lightning checkpoint (no state_dict)")
            hparams = checkpoint.get("hyper_parameters") or {}
            hparams.pop("_instantiator", None)
            if hparams:
                model = {"class_path": self.config[command].model.class_path, "init_args": hparams}
                self.config = self.parser.parse_object({command: {"model": model}}, self.config)

    if argv[0] in ("fit", "validate", "test") and not any(a.split("=")[0] in CONFIG_FLAGS for a in argv[1:]):
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
        raise SystemExit(f"perceiverio {argv[0]}: {_first_line(e)} (see --help or --print_config)") from None
    except (ValueError, FileNotFoundError, NonFiniteError, MisconfigurationException) as e:
        # bad data or config, unwritable folders, divergence, a trainer option Lightning refuses
        raise SystemExit(f"perceiverio {argv[0]}: {_first_line(e)}") from None
    finally:
        sys.argv = saved


def _first_line(error: BaseException) -> str:
    """The informative line of an error; jsonargparse wraps a class's own error in a list of union attempts, whose
    first line ("Problem with given class_path ...:") is continued by the more indented lines below it."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        text = line.strip()
        if not text.startswith("- ") or text[2:].startswith(("Expected a ", "Given value", "Does not validate")):
            continue
        cause, indent = text[2:], len(line) - len(line.lstrip())
        for detail in lines[i + 1 :]:
            if not cause.endswith(":") or len(detail) - len(detail.lstrip()) <= indent:
                break
            cause += " " + detail.strip()
        return cause
    return lines[0].strip() if lines else type(error).__name__


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


# ------------------------------------------------------------------------------------------------ convert
_TASKS = {
    "mlm": "MaskedLanguageModel",
    "classifier": "SequenceClassifier",
    "image": "ImageClassifier",
    "flow": "OpticalFlow",
    "multimodal": "MultimodalAutoencoder",
}


def _model_class(name: str):
    import perceiverio

    return getattr(perceiverio, name)


def _hf_class(source: str | Path, revision: str | None):
    """The model class of a transformers checkpoint (folder or Hub repository), from its config's architectures."""
    from .weights.registry import model_class_for
    from .weights.transformers import read_config

    archs = read_config(source, revision).get("architectures") or []
    cls = model_class_for(archs)
    if cls is None:
        raise SystemExit(
            f"perceiverio convert hf: config.json names architectures {archs}; pass --task one of {sorted(_TASKS)}"
        )
    return cls


def _haiku_task(path: Path) -> str:
    from .weights.haiku import read_haiku

    params, _ = read_haiku(path)
    modules = {k.split("/")[0] for k in params}
    for marker, name in (
        ("multimodal_decoder", "MultimodalAutoencoder"),
        ("flow_decoder", "OpticalFlow"),
        ("embedding_decoder", "MaskedLanguageModel"),
        ("image_preprocessor", "ImageClassifier"),
        ("embed", "SequenceClassifier"),
    ):
        if marker in modules:
            return name
    raise SystemExit(
        f"perceiverio convert haiku: cannot tell the model from modules {sorted(modules)[:8]}; "
        f"pass --task one of {sorted(_TASKS)}"
    )


def check_convert_output(output: Path, overwrite: bool) -> None:
    """SystemExit unless ``output`` can take a converted model: a folder without one (or a new folder), or one
    holding a model (``config.json``/``model.safetensors``) only with ``overwrite``."""
    if output.exists() and not output.is_dir():
        raise SystemExit(f"perceiverio convert: OUT_DIR {str(output)!r} is a file; expected a folder")
    held = [name for name in MODEL_FILES if (output / name).exists()]
    if held and not overwrite:
        raise SystemExit(
            f"perceiverio convert: OUT_DIR {str(output)!r} already holds a model ({', '.join(held)}); expected a "
            "folder without one, or pass --overwrite to replace it"
        )


def _convert(argv: list[str]) -> None:
    from .weights.hub import is_repo_id

    parser = argparse.ArgumentParser(
        prog="perceiverio convert", description="Convert transformers or Haiku weights to a perceiverio folder."
    )
    parser.add_argument(
        "source_kind",
        choices=["hf", "haiku"],
        help="hf: a transformers folder or Hugging Face Hub repository id; haiku: .pickle/.npz",
    )
    parser.add_argument(
        "source",
        help="hf: a folder or an org/name Hub repository id (fetched into the Hub cache); haiku: a params file",
    )
    parser.add_argument("output", type=Path, help="folder to write model.safetensors + config.json into")
    parser.add_argument("--task", choices=sorted(_TASKS), help="model kind (default: inferred)")
    parser.add_argument(
        "--config",
        type=Path,
        help="a perceiverio config.json whose model config to use (e.g. head counts, which Haiku "
        "arrays do not reveal; default: inferred with the released models' head counts)",
    )
    parser.add_argument("--revision", help="hf from the Hub only: branch, tag or commit (default: main)")
    parser.add_argument(
        "--official-masking",
        action="store_true",
        help="hf only: use DeepMind's mask semantics instead of reproducing transformers exactly",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in the output folder")
    args = parser.parse_args(argv)
    check_convert_output(args.output, args.overwrite)
    from_hub = args.source_kind == "hf" and is_repo_id(args.source)
    if not from_hub and not Path(args.source).exists():
        raise SystemExit(f"perceiverio convert: {args.source} does not exist")
    if args.revision is not None and not from_hub:
        raise SystemExit("perceiverio convert: --revision applies to a Hugging Face Hub repository id")
    source = args.source if from_hub else Path(args.source)
    try:
        if args.task:
            cls = _model_class(_TASKS[args.task])
        elif args.source_kind == "hf":
            cls = _hf_class(source, args.revision)
        else:
            cls = _model_class(_haiku_task(source))
        config = None
        if args.config is not None:
            from .weights.checkpoint import config_from_dict

            config = config_from_dict(json.loads(args.config.read_text())["config"])
        if args.source_kind == "hf":
            overrides = {"masking": "official"} if args.official_masking else {}
            model = cls.from_transformers(source, config=config, revision=args.revision, **overrides)
        else:
            model = cls.from_haiku(source, config=config)
        model.save_pretrained(args.output)
    except (ValueError, KeyError, OSError) as e:
        raise SystemExit(f"perceiverio convert: {e}") from None
    print(f"wrote {cls.__name__} ({model.num_parameters():,} parameters) to {args.output}")


# ------------------------------------------------------------------------------------------------ fill-mask
def fill_mask(model, text: str, word: str | None = None, mask_char: str | None = None) -> str:
    """Mask bytes of ``text`` and return it with the model's fillings: every byte of the first occurrence of
    ``word`` (whole-word masking), or every occurrence of the one-byte character ``mask_char`` (byte masking)."""
    import torch

    from .tokenizer import ByteTokenizer

    if (word is None) == (mask_char is None):
        raise ValueError("give exactly one of --word (mask a whole word) or --mask-char (mask single bytes)")
    tok = ByteTokenizer()
    ids = tok(text).input_ids
    if word is not None:
        if not word or word not in text:
            raise ValueError(f"{word!r} does not occur in the text")
        start = len(text[: text.index(word)].encode())
        positions = torch.arange(start, start + len(word.encode()))
    else:
        if len(mask_char.encode()) != 1:
            raise ValueError(f"--mask-char must be one single-byte character such as '_', got {mask_char!r}")
        raw = torch.tensor(list(text.encode()))
        positions = torch.nonzero(raw == mask_char.encode()[0]).flatten()
        if positions.numel() == 0:
            raise ValueError(f"the text has no {mask_char!r} to fill")
    ids[0, positions] = tok.mask_token_id
    with torch.no_grad():
        logits = model(ids, positions=positions).logits[0]  # [K, V]
    filled = ids[0].clone()
    filled[positions] = logits.argmax(-1)
    return tok.decode(filled)


def _fill_mask(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="perceiverio fill-mask", description="Mask bytes of a text and print the model's filling."
    )
    parser.add_argument("model", type=Path, help="a folder with model.safetensors + config.json")
    parser.add_argument("--text", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--word", help="mask every byte of this word (its first occurrence)")
    what.add_argument("--mask-char", help="mask every occurrence of this one-byte character, e.g. '_'")
    args = parser.parse_args(argv)
    from .tasks.language import MaskedLanguageModel

    try:
        model = MaskedLanguageModel.from_pretrained(args.model)
        size = len(args.text.encode("utf-8"))
        if size > model.config.max_seq_len:
            raise ValueError(f"--text has {size} bytes, more than the model's max_seq_len {model.config.max_seq_len}")
        print(fill_mask(model, args.text, args.word, args.mask_char))
    except ValueError as e:
        raise SystemExit(f"perceiverio fill-mask: {e}") from None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    if argv[0] == "convert":
        return _convert(argv[1:])
    if argv[0] == "fill-mask":
        return _fill_mask(argv[1:])
    if argv[0] in LIGHTNING_COMMANDS:
        return _lightning(argv)
    raise SystemExit(
        f"perceiverio: unknown command {argv[0]!r}; expected one of "
        f"{', '.join((*LIGHTNING_COMMANDS, 'convert', 'fill-mask'))}"
    )


if __name__ == "__main__":
    main()
