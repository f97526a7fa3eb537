"""Output folders of a run, checked before the first step: every folder that training will write (the loggers'
folders, checkpoints, the exported model) must be a folder this process can write, or one it can create, instead
of a ``PermissionError`` or ``FileExistsError`` after hours of training.

Each problem is one ``ValueError`` line naming the option that sets the folder, the folder and what is wrong.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

PROBE_PREFIX = ".perceiverio-write-check-"


def check_folder(folder: str | os.PathLike, option: str, create: bool = True) -> None:
    """A ValueError unless ``folder`` is a writable folder: created when missing (``create``), then a probe file
    written and removed. Without ``create`` a missing folder is checked where it would be created (its nearest
    existing parent). ``option`` names the setting in messages (``"export.dirpath"``)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "" if existing == folder else f" inside {str(existing)!r}, which"
        raise ValueError(
            f"{option} {str(folder)!r} cannot be a folder{where}: a file is in the way; expected a folder (or a "
            "path where one can be created)"
        )
    target = existing
    if create and not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(
                f"{option} {str(folder)!r} cannot be created ({e.strerror or e}); expected a writable folder"
            ) from None
        target = folder
    probe = target / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        what = "is not writable" if target == folder else f"cannot be created in {str(target)!r}"
        raise ValueError(
            f"{option} {str(folder)!r} {what} ({e.strerror or e}); expected a folder this user can write"
        ) from None
    finally:
        probe.unlink(missing_ok=True)


def default_folder_option(kind: str) -> str:
    """How messages name a folder that its option ``<kind>.dirpath`` leaves at its default."""
    return f"the {kind} folder ({kind}.dirpath; by default in the log folder under trainer.default_root_dir)"


def output_folders(trainer: L.Trainer, fitting: bool) -> list[tuple[Path, str, bool]]:
    """``(folder, option, create)`` for every folder a run of ``trainer`` writes: the loggers' roots (created),
    and while fitting the checkpoint folder and those of callbacks with an ``output_folder(trainer)`` method (the
    export), created when named by their option, else checked where they will be created in the log folder. Reading
    the log folder fixes the loggers' version, as Lightning does."""
    root = Path(trainer.default_root_dir)
    folders: list[tuple[Path, str, bool]] = []
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir is not None:
            same = os.path.normpath(save_dir) == os.path.normpath(root)
            option = "trainer.default_root_dir" if same else f"the save_dir of {type(logger).__name__} (trainer.logger)"
            folders.append((Path(save_dir), option, True))
    if not trainer.loggers:
        folders.append((root, "trainer.default_root_dir", True))
    if not fitting:
        return folders
    log_dir = Path(trainer.log_dir or root)
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None:
            folders.append((Path(cb.dirpath), "checkpoint.dirpath", True))
        elif isinstance(cb, ModelCheckpoint):
            folders.append((log_dir / "checkpoints", default_folder_option("checkpoint"), False))
        elif callable(getattr(cb, "output_folder", None)):  # a callback that writes a folder (ExportCallback)
            folders.append(cb.output_folder(trainer))
    return folders


def check_outputs(trainer: L.Trainer, fitting: bool = True) -> None:
    """Check every output folder of ``trainer`` (:func:`output_folders`) with :func:`check_folder`."""
    seen: set[Path] = set()
    for folder, option, create in output_folders(trainer, fitting):
        if folder not in seen:
            seen.add(folder)
            check_folder(folder, option, create)
