"""Atomic file writes, shared by the checkpoints, exports, pictures and predictions: a temporary file beside the
target, then a rename, so a reader sees the old file or the new one, never part of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"  # temporary files of the atomic writes: .<name>.<random>.tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = "") -> Path:
    """Write ``path`` through ``write(temporary path)`` and rename: a reader sees the old file or the new one, never
    part of one; returns ``path``. The temporary file has a unique name of our pattern (``.<name>.<random>.tmp``,
    see :func:`remove_stale_temporaries`; ``suffix`` is appended for writers that pick a format by the name, such
    as PyAV's) and is removed whatever happens before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX + suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already after the rename
    return path
