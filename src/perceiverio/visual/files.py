"""Atomic writes of pictures, media and text (:func:`perceiverio.files.atomic_write`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..files import atomic_write

__all__ = ["atomic_write", "save_figure", "write_text"]


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_figure(fig, path: str | os.PathLike, **savefig: object) -> Path:
    """``fig`` as a PNG at ``path``, atomically (``savefig``: matplotlib's options, e.g. ``dpi``)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", **savefig))
