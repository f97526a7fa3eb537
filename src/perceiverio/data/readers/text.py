"""Text readers: plain-text files and folders, labelled tables (TSV/CSV/JSONL), the embedded corpus, and
Hugging Face ``datasets`` by name or local folder.

Every problem with a user's source (missing path, no files, unknown format, missing column) raises a
``ValueError`` with a one-line message naming the path and what was expected.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")


def embedded_topics() -> dict[str, str]:
    """The Python standard library's ``pydoc_data.topics.topics``: about 465k characters of English reference
    prose in 79 topics (PSF licence), ``{topic: text}``."""
    from pydoc_data.topics import topics

    return dict(topics)


def text_files(path: str | Path) -> list[Path]:
    """``path`` itself if it is a file, else the ``.txt``/``.md`` files under it (recursive, sorted)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(
            f"text path {str(p)!r} does not exist; expected a UTF-8 text file or a folder of .txt/.md files"
        )
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise ValueError(f"text folder {str(p)!r} holds no .txt or .md files")
    return files


def read_text_file(path: str | Path) -> str:
    """One UTF-8 file (a BOM is dropped); a clear error for binary or non-UTF-8 content."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"text file {str(p)!r} is not UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ValueError(f"cannot read text file {str(p)!r}: {e.strerror or e}") from None


def read_texts(path: str | Path, progress: bool = True) -> list[tuple[str, str]]:
    """``[(relative name, text)]`` for a text file or every ``.txt``/``.md`` file under a folder."""
    files = text_files(path)
    root = Path(path).expanduser()
    it: Iterable[Path] = tqdm(files, desc="reading text", unit="file", disable=not progress or len(files) < 50)
    out = []
    for f in it:
        name = f.name if root.is_file() else str(f.relative_to(root))
        out.append((name, read_text_file(f)))
    return out


def table_format(path: str | Path) -> str:
    """``"tsv"``, ``"csv"`` or ``"jsonl"`` from the file name (``.json`` is read as JSON lines or a JSON list)."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"unknown table format {str(path)!r}: expected a .tsv, .csv, .jsonl or .json file")
    return "jsonl" if suffix in (".jsonl", ".json") else suffix[1:]


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a TSV (tab-separated, header line, no quoting: the GLUE layout), CSV (header line, standard
    quoting) or JSON-lines file (one object per line; a ``.json`` file may also hold one list of objects)."""
    p = Path(path).expanduser()
    fmt = table_format(p)
    if not p.is_file():
        raise ValueError(f"table file {str(p)!r} does not exist; expected a .tsv, .csv or .jsonl file")
    text = read_text_file(p)
    if fmt in ("tsv", "csv"):
        if fmt == "tsv":
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(text.splitlines(keepends=True))
        rows = [r for r in reader if r]
        if not rows:
            raise ValueError(f"table file {str(p)!r} is empty; expected a header line and rows")
        header = [h.strip() for h in rows[0]]
        out = []
        for i, r in enumerate(rows[1:], start=2):
            if len(r) != len(header):
                raise ValueError(
                    f"{str(p)!r} line {i} has {len(r)} fields, the header has {len(header)} ({', '.join(header)})"
                )
            out.append(dict(zip(header, r)))
        return out
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(p)!r} is not JSON lines: {e.msg} at line {e.lineno}") from None
    if not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{str(p)!r} must hold one JSON object per line")
    return data


def check_columns(rows: list[dict[str, Any]], columns: Iterable[str], source: str) -> None:
    """A one-line ``ValueError`` naming the columns found when one of ``columns`` is missing."""
    found = list(rows[0].keys()) if rows else []
    for c in columns:
        if not rows or c not in rows[0]:
            raise ValueError(f"{source} has no column {c!r}; columns found: {', '.join(map(str, found)) or 'none'}")


def find_split_file(folder: str | Path, names: Iterable[str]) -> Path | None:
    """The first ``folder/{name}.{tsv,csv,jsonl,json}`` that exists, trying ``names`` in order."""
    root = Path(folder)
    for name in names:
        for suffix in TABLE_SUFFIXES:
            f = root / f"{name}{suffix}"
            if f.is_file():
                return f
    return None


def load_hf_dataset(name: str, config: str | None = None) -> Any:
    """``datasets.load_dataset`` on a Hub name (needs the network unless cached), a local dataset folder, or a
    single data file (``.csv``, ``.tsv``, ``.json``, ``.jsonl``, ``.parquet``, ``.txt``: its builder is picked from
    the extension). Returns a ``DatasetDict``."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - an optional dependency
        raise ValueError(
            f"dataset={name!r} needs the Hugging Face `datasets` package: pip install 'perceiverio[datasets]'"
        ) from None
    p = Path(name).expanduser()
    builders = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
    try:
        if p.is_file():
            builder = builders.get(p.suffix.lower())
            if builder is None:
                raise ValueError(f"dataset file {name!r} has an unknown format; expected one of {', '.join(builders)}")
            kwargs = {"delimiter": "\t"} if p.suffix.lower() == ".tsv" else {}
            return datasets.load_dataset(builder, data_files={"train": str(p)}, **kwargs)
        return datasets.load_dataset(str(p) if p.is_dir() else name, config)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types; report them on one line
        msg = " ".join(str(e).split())
        raise ValueError(
            f"cannot load dataset {name!r}{f' (config {config!r})' if config else ''}: {type(e).__name__}: {msg[:300]}"
        ) from None
