"""Class labels of classification data, checked before anything is allocated per class.

The labels are checked against the classes the model predicts (``model_num_classes()`` of the task module that the
data module's trainer runs), else the classes the data module declares, else the classes the training labels
imply (integer ids below :data:`MAX_CLASSES`). A label that is not one of them raises a one-line
``ValueError`` naming the file, the line as an editor numbers it (``line 4``; ``row N`` of a dataset split, ``item
N`` of a JSON list), the value and what was expected.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: class ids read from the labels alone (no model, no declared classes), and a declared number of classes, stay
#: within this
MAX_CLASSES = 100_000


def check_classes_option(classes: Any) -> int | list[str] | None:
    """A data module's ``classes`` option: None, a number of classes in ``[2, MAX_CLASSES]`` or a list of at
    least 2 distinct class names; a ValueError naming the option otherwise."""
    if classes is None:
        return None
    if isinstance(classes, int) and not isinstance(classes, bool) and 2 <= classes <= MAX_CLASSES:
        return classes
    names = list(classes) if isinstance(classes, (list, tuple)) else []
    if len(names) >= 2 and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
        return names
    raise ValueError(
        f"classes must be a number of classes in [2, {MAX_CLASSES}] or a list of at least 2 distinct class names, "
        f"got {classes!r}"
    )


def model_classes(datamodule: Any) -> int | None:
    """The number of classes of the model that ``datamodule``'s trainer runs (its task module's
    ``model_num_classes()``); None outside a trainer or for a model without classes."""
    trainer = getattr(datamodule, "trainer", None)
    try:
        module = trainer.lightning_module if trainer is not None else None
    except (AttributeError, RuntimeError):
        return None
    count = getattr(module, "model_num_classes", None)
    k = count() if callable(count) else None
    return k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None


def as_class_id(v: Any) -> int | None:
    """``v`` as an int class id (ints, integral floats, bools, digit strings), or None."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def table_position(path: str | Path, index: int) -> str:
    """Where data row ``index`` (0-based, after the header) of a table file read by
    :func:`~perceiverio.data.readers.text.read_table` is, as an editor numbers it: ``line N`` of a TSV, CSV (a
    quoted field may span lines) or JSON-lines file, ``item N`` of a JSON list."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return f"row {index + 1}"
    suffix = p.suffix.lower()
    if suffix in (".json", ".jsonl") and text.lstrip().startswith("["):
        return f"item {index + 1}"
    pieces = text.splitlines(keepends=True)  # the reader's records; an editor counts only "\n"
    line_of = [1]
    for piece in pieces:
        line_of.append(line_of[-1] + piece.count("\n"))
    if suffix == ".csv":
        reader, starts, consumed = csv.reader(pieces), [], 0
        for record in reader:
            if record:
                starts.append(line_of[consumed])
            consumed = reader.line_num
        starts = starts[1:]  # after the header
    elif suffix == ".tsv":
        starts = [line_of[i] for i, piece in enumerate(pieces) if piece.rstrip("\r\n")][1:]
    else:
        starts = [line_of[i] for i, piece in enumerate(pieces) if piece.strip()]
    return f"line {starts[index]}" if 0 <= index < len(starts) else f"row {index + 1}"


@dataclass
class Labels:
    """One split's labels: ``values`` in row order, ``source`` (the file or dataset split, as messages name it) and
    ``path`` (the table file, for line numbers; None for a dataset split)."""

    values: list[Any]
    source: str
    path: Path | None = None

    def where(self, index: int) -> str:
        """``<source> line N (row M)`` of the label at ``index`` (``row M`` of a dataset split)."""
        row = f"row {index + 1}"
        position = row if self.path is None else table_position(self.path, index)
        return f"{self.source} {position}" + (f" ({row})" if position.startswith("line") else "")


class LabelEncoder:
    """The classes of a classification data set, and the class ids of any split's labels.

    ``classes``: the number of classes the labels must be ids of (the model's, or one the data module declares), or
    the list of class names (a label is a name or its id); None: inferred from ``splits`` (the training and
    validation labels). ``origin`` says in messages where ``classes`` comes from (``"num_classes=2 of the
    model"``). ``names``: the names of integer classes (a Hugging Face ``ClassLabel`` feature's).

    Integer labels (also as text) are class ids as they are; a non-integer label among them is refused. Other
    labels are strings, mapped to ids in sorted order; more distinct strings than ``classes`` is refused at the
    first row of the rarest one. Every check runs before a list is built by label value.
    """

    def __init__(
        self,
        splits: Sequence[Labels],
        names: Sequence[str] | None = None,
        classes: int | Sequence[str] | None = None,
        origin: str = "",
    ) -> None:
        self.declared = None if classes is None or isinstance(classes, int) else [str(n) for n in classes]
        k = len(self.declared) if self.declared is not None else classes
        self.origin = f" ({origin})" if origin else ""
        self.inferring = k is None  # integer ids checked against MAX_CLASSES
        self.index: dict[str, int] = {}
        if self.declared is not None:
            self.ints, self.names, self.num_classes = False, self.declared, k
            self.index = {n: i for i, n in enumerate(self.names)}
            for split in splits:
                self.encode(split)
            return
        n_ints = sum(as_class_id(v) is not None for s in splits for v in s.values)
        n_all = sum(len(s.values) for s in splits)
        self.ints = n_ints > 0 and 2 * n_ints >= n_all  # mostly integers: the other labels are mistakes
        if self.ints:
            self.num_classes = k if k is not None else MAX_CLASSES  # the bound while checking
            found = max((self._id(s, i, v) for s in splits for i, v in enumerate(s.values)), default=-1)
            self.num_classes = k if k is not None else found + 1
            self.inferring = False
            given = list(names) if names is not None else []
            self.names = given if len(given) >= self.num_classes else [str(i) for i in range(self.num_classes)]
            return
        counts = Counter(str(v) for s in splits for v in s.values)
        if k is not None and len(counts) > k:
            self._too_many(splits, counts, k)
        self.names = sorted(counts)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.num_classes = k if k is not None else len(self.names)

    def _expected(self) -> str:
        if self.declared is not None:
            return f"one of the classes {self.declared[:10]} or a class id in [0, {self.num_classes}){self.origin}"
        if self.ints and self.inferring:
            return (
                f"a class id in [0, {MAX_CLASSES}) (no number of classes given: ids are inferred from the "
                "labels; give the data module's classes=K to check against K classes)"
            )
        if self.ints:
            return f"a class id in [0, {self.num_classes}){self.origin}"
        return f"one of the training labels {self.names[:10]}{self.origin}"

    def _id(self, split: Labels, i: int, v: Any) -> int:
        """The class id of label ``v`` (row ``i`` of ``split``); a ValueError naming its place when it is none."""
        if self.declared is not None:
            y = self.index.get(str(v))
            y = as_class_id(v) if y is None else y
        elif self.ints:
            y = as_class_id(v)
            if y is None:
                bound = "" if self.inferring else f" in [0, {self.num_classes}){self.origin}"
                raise ValueError(
                    f"{split.where(i)}: label {v!r} is not a class id; expected an integer class id{bound} like "
                    "the other labels"
                )
        else:
            y = self.index.get(str(v))
        if y is None or not 0 <= y < self.num_classes:
            raise ValueError(f"{split.where(i)}: label {v!r} is not {self._expected()}")
        return y

    def _too_many(self, splits: Sequence[Labels], counts: Counter, k: int) -> None:
        rarest = min(reversed(list(counts)), key=counts.__getitem__)  # ties: the one that appears last
        split, i = next((s, i) for s in splits for i, v in enumerate(s.values) if str(v) == rarest)
        listing = ", ".join(f"{n!r} ×{c}" for n, c in counts.most_common(6)) + (", …" if len(counts) > 6 else "")
        raise ValueError(
            f"{split.where(i)}: label {rarest!r} is not one of {k} classes{self.origin}: the data has "
            f"{len(counts)} distinct labels ({listing}), this one the rarest"
        )

    def encode(self, split: Labels) -> list[int]:
        """Class ids of ``split``'s labels; a ValueError naming the file, line and value of a label that is not one
        of the classes."""
        return [self._id(split, i, v) for i, v in enumerate(split.values)]


def check_class_ids(splits: Sequence[tuple[np.ndarray, str]], classes: int | None, origin: str = "") -> int:
    """The number of classes of integer label arrays (``(labels, source)``, e.g. IDX label files, numbered by
    index from 0): ``classes`` when given, else ``max + 1``. A ValueError names the source, index and value of
    the first label outside ``[0, classes)`` (or, inferred, outside ``[0, MAX_CLASSES)``)."""
    bound = classes if classes is not None else MAX_CLASSES
    found = -1
    for labels, source in splits:
        a = np.asarray(labels, dtype=np.int64)
        bad = np.flatnonzero((a < 0) | (a >= bound))
        if len(bad):
            i = int(bad[0])
            why = f" ({origin})" if origin else " (classes inferred from the labels)"
            raise ValueError(
                f"{source} index {i}: label {int(a[i])} is not a class id in [0, {bound}){why}; "
                f"{len(bad)} such label(s) in all"
            )
        found = max(found, int(a.max(initial=-1)))
    return classes if classes is not None else found + 1
