"""What ``perceiverio predict`` reads: the user's files and folders named by a data module's ``predict_path``.

Every prediction item carries ``"index"``, its position in the data module's ``predict_names`` (the file, the
line or the pair it came from), so a writer can name what it writes. Inputs per task:

* text (MLM and classifiers): a ``.txt``/``.md`` file or a folder of them (recursive, sorted); **one example per
  non-empty line**, cut to the model's length in bytes (the writer notes a cut line). For the MLM, every
  ``mask_char`` (``_`` by default) in a line is a masked byte that the model fills.
* images: an image file or a folder of them (recursive, sorted).
* flow: a folder holding a known layout (FlyingChairs, MPI-Sintel, KITTI: their pairs, ground truth unused), or
  else frames in name order, each paired with the next (two images: one pair).
* video: a video file or a folder of them; each is cut into consecutive clips of the model's ``num_frames``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..tokenizer import MASK_ID, NUM_SPECIAL, PAD_ID
from .readers.text import read_text_file

TEXT_SUFFIXES = (".txt", ".md")
TEXT_EXPECTED = "a .txt/.md file or a folder of them (one example per line)"


def missing_predict_path(module: str, expected: str) -> ValueError:
    """The one-line error of ``predict`` without input."""
    return ValueError(f"{module} has no predict_path: give --data.predict_path with {expected} to predict on")


def check_predict_path(path: Any, expected: str) -> str | None:
    """``path`` as a string (None stays None); a ValueError naming ``predict_path`` when it is not an existing
    file or folder."""
    if path is None:
        return None
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"predict_path must be a file or folder path ({expected}), got {path!r}")
    if not Path(path).expanduser().exists():
        raise ValueError(f"predict_path {str(path)!r} does not exist; expected {expected}")
    return str(path)


def predict_files(path: str, suffixes: tuple[str, ...], expected: str) -> list[Path]:
    """``path`` itself when it is a file with one of ``suffixes``, else the files with them under the folder
    ``path`` (recursive, sorted); a ValueError when there are none."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() not in suffixes:
            raise ValueError(f"predict_path {path!r} is not {expected} (one of {', '.join(suffixes)})")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"predict_path folder {path!r} holds no {expected} ({', '.join(suffixes)})")
    return files


def relative_name(file: Path, path: str) -> str:
    """``file`` relative to the folder ``path`` (its name when ``path`` is the file)."""
    root = Path(path).expanduser()
    return file.name if root.is_file() else str(file.relative_to(root))


def text_lines(path: str) -> list[tuple[str, str]]:
    """``[(name "file:line", text)]``: every non-empty line of the text files of ``path``."""
    found = []
    for f in predict_files(path, TEXT_SUFFIXES, "a text file"):
        name = relative_name(f, path)
        for i, line in enumerate(read_text_file(f).splitlines(), 1):
            if line.strip():
                found.append((f"{name}:{i}", line))
    if not found:
        raise ValueError(f"predict_path {path!r} has no non-empty line of text")
    return found


class PredictTexts(Dataset):
    """Lines of text as byte ids, cut to ``max_length`` bytes; with ``mask_char`` (one byte) its occurrences
    become MASK. Items: ``{"input_ids" [L], "index"}``; collate with :func:`collate_texts`."""

    def __init__(self, lines: list[tuple[str, str]], max_length: int, mask_char: str | None = None) -> None:
        self.lines, self.max_length = lines, int(max_length)
        self.names = [name for name, _ in lines]
        self.mask_byte = None if mask_char is None else mask_char.encode()[0]

    def __len__(self) -> int:
        return len(self.lines)

    def truncated(self, i: int) -> bool:
        return len(self.lines[i][1].encode()) > self.max_length

    def __getitem__(self, i: int) -> dict[str, Any]:
        raw = self.lines[i][1].encode()[: self.max_length]
        data = torch.tensor(list(raw), dtype=torch.long)
        ids = data + NUM_SPECIAL  # the byte tokenizer's ids, no special tokens
        if self.mask_byte is not None:
            ids[data == self.mask_byte] = MASK_ID
        return {"input_ids": ids, "index": i}


def collate_texts(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` (PAD) and set ``attention_mask``; ``index`` [B]."""
    n = max(max(len(it["input_ids"]) for it in items), 1)
    ids = torch.full((len(items), n), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for b, it in enumerate(items):
        k = len(it["input_ids"])
        ids[b, :k], mask[b, :k] = it["input_ids"], 1
    return {"input_ids": ids, "attention_mask": mask, "index": torch.tensor([it["index"] for it in items])}


class Indexed(Dataset):
    """``dataset[i]`` (a dict) with ``"index": i`` added; ``names[i]`` names item ``i`` in what is written."""

    def __init__(self, dataset: Any, names: list[str]) -> None:
        self.dataset, self.names = dataset, list(names)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], "index": i}


def check_mask_char(mask_char: Any) -> str:
    """``mask_char`` when it is one single-byte character; else a ValueError."""
    if not isinstance(mask_char, str) or len(mask_char.encode()) != 1:
        raise ValueError(f"mask_char must be one single-byte character such as '_', got {mask_char!r}")
    return mask_char
