"""Data-module entry points: construct with generated arguments, ``setup("fit")``, draw one training batch; the
source files are generated too (missing, a folder, empty, binary junk, a wrong column, a label out of range)."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path
from typing import Any

from fuzz.cases import Arg, EntryPoint
from hypothesis import strategies as st

TEXT = "The perceiver reads bytes. It writes any output through queries.\n" * 40


@dataclasses.dataclass(frozen=True)
class Source:
    """A generated source file or folder; ``names``: what an error about it must mention."""

    kind: str
    names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Source({self.kind})"


@functools.cache
def _root() -> Path:
    return Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-data-"))


def _write(kind: str, valid: str, suffix: str) -> Path:
    folder = _root() / kind
    folder.mkdir(exist_ok=True)
    path = folder / f"source{suffix}"
    if kind == "missing":
        return folder / f"missing{suffix}"
    if kind == "folder":
        return folder
    path.write_bytes(
        {"empty": b"", "junk": bytes(range(256)) * 4, "blank": b"\n \n\t\n"}.get(kind, b"") or valid.encode()
    )
    return path


def _sources(valid_kinds: tuple[str, ...], bad_kinds: tuple[str, ...], name: str) -> st.SearchStrategy:
    return st.sampled_from(bad_kinds).map(lambda k: (f"source:{k}", Source(k, (name, "source", str(_root())))))


def _text_module(path, seq_len, batch_size, mask_prob, val_fraction, num_workers, masking):
    from perceiverio.data import TextDataModule

    file = _write(path.kind, TEXT, ".txt") if isinstance(path, Source) else path
    dm = TextDataModule(
        path=str(file) if isinstance(file, Path) else file,
        seq_len=seq_len,
        batch_size=batch_size,
        mask_prob=mask_prob,
        val_fraction=val_fraction,
        num_workers=num_workers,
        masking=masking,
    )
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _causal_text_module(path, max_context, num_latents, batch_size, val_fraction, num_workers):
    from perceiverio.data import CausalTextDataModule

    file = _write(path.kind, TEXT, ".txt") if isinstance(path, Source) else path
    dm = CausalTextDataModule(
        path=str(file) if isinstance(file, Path) else file,
        max_context=max_context,
        num_latents=num_latents,
        batch_size=batch_size,
        val_fraction=val_fraction,
        num_workers=num_workers,
    )
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _table(rows: list[tuple[str, Any]]) -> str:
    return "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)


TABLES = {
    "valid": _table([("a fine film", 1), ("a dull film", 0)] * 10),
    "label_huge": _table([("a fine film", 1), ("a dull film", 0), ("odd", 99999999999)] * 5),
    "label_na": _table([("a fine film", 1), ("a dull film", 0), ("odd", "N/A")] * 5),
    "label_7": _table([("a fine film", 1), ("a dull film", 0), ("odd", 7)] * 5),
    "label_neg": _table([("a fine film", 1), ("a dull film", -3)] * 5),
    "no_label_column": "sentence\tscore\n" + "a fine film\t1\n" * 10,
    "no_text_column": "text\tlabel\n" + "a fine film\t1\n" * 10,
    "ragged": "sentence\tlabel\n" + "a fine film\n" * 10,
    "header_only": "sentence\tlabel\n",
}


def _classification_module(path, max_length, batch_size, classes):
    from perceiverio.data import TextClassificationDataModule

    if isinstance(path, Source):
        folder = _root() / f"table-{path.kind}"
        folder.mkdir(exist_ok=True)
        if path.kind in TABLES:
            (folder / "train.tsv").write_text(TABLES[path.kind])
        elif path.kind != "folder":
            (folder / "train.tsv").write_bytes({"empty": b"", "junk": bytes(range(256)) * 4}.get(path.kind, b""))
        path = str(folder / "nowhere") if path.kind == "missing" else str(folder)
    dm = TextClassificationDataModule(path=path, max_length=max_length, batch_size=batch_size, classes=classes)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


INT = dict(kind="int")
DATA_ENTRY_POINTS = [
    EntryPoint(
        "TextDataModule",
        _text_module,
        {
            "path": Arg(
                lambda rng: Source("valid"),
                kind="value",
                names=("path",),
                draws=_sources(("valid",), ("missing", "folder", "empty", "junk", "blank"), "path"),
            ),
            "seq_len": Arg(lambda rng: 32, names=("seq_len",), **INT),
            "batch_size": Arg(lambda rng: 4, names=("batch_size",), **INT),
            "mask_prob": Arg(
                lambda rng: 0.15, kind="value", names=("mask_prob",), bad=(-0.1, 1.5, float("nan"), "0.15")
            ),
            "val_fraction": Arg(lambda rng: 0.1, kind="value", names=("val_fraction",), bad=(-0.1, 1.0, 2.0, "x")),
            "num_workers": Arg(lambda rng: 0, names=("num_workers",), **INT),
            "masking": Arg(lambda rng: "whole_word", kind="value", names=("masking",), bad=("span", "", 1)),
        },
    ),
    EntryPoint(
        "CausalTextDataModule",
        _causal_text_module,
        {
            "path": Arg(
                lambda rng: Source("valid"),
                kind="value",
                names=("path",),
                draws=_sources(("valid",), ("missing", "folder", "empty", "junk", "blank"), "path"),
            ),
            "max_context": Arg(lambda rng: 32, names=("max_context",), **INT),
            "num_latents": Arg(lambda rng: 8, names=("num_latents",), **INT),
            "batch_size": Arg(lambda rng: 4, names=("batch_size",), **INT),
            "val_fraction": Arg(lambda rng: 0.1, kind="value", names=("val_fraction",), bad=(-0.1, 1.0, 2.0, "x")),
            "num_workers": Arg(lambda rng: 0, names=("num_workers",), **INT),
        },
    ),
    EntryPoint(
        "TextClassificationDataModule",
        _classification_module,
        {
            "path": Arg(
                lambda rng: Source("valid"),
                kind="value",
                names=("path",),
                draws=st.sampled_from(sorted({*TABLES, "missing", "folder", "empty", "junk"} - {"valid"})).map(
                    lambda k: (
                        f"table:{k}",
                        Source(k, ("train.tsv", "path", "label", "sentence", "column", str(_root()))),
                    )
                ),
            ),
            "max_length": Arg(lambda rng: 32, names=("max_length",), **INT),
            "batch_size": Arg(lambda rng: 4, names=("batch_size",), **INT),
            "classes": Arg(
                lambda rng: 2,
                kind="value",
                optional=True,
                names=("classes",),
                bad=(0, -1, 1.5, "two", [], ["a"], [1, 1], True, 10**12),
            ),
        },
    ),
]
