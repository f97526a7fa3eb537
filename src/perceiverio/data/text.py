"""Text data modules: byte-level masked language modelling and text classification.

Batches are ``{"input_ids": [B, L] long, "attention_mask": [B, L] long (1 = byte, 0 = padding), "labels": ...}``
with the official byte ids of :class:`~perceiverio.tokenizer.ByteTokenizer` (byte b -> b + 6, PAD 0, MASK 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..core.config import check_choice
from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import NUM_SPECIAL, ByteTokenizer
from .masking import MASKING_COLLATORS, WholeWordMaskingCollator
from .readers.text import (
    check_columns,
    embedded_topics,
    find_split_file,
    load_hf_dataset,
    read_table,
    read_texts,
    text_files,
)
from .sampling import (
    DescribedDataset,
    EpochSampler,
    FixedLengthCollate,
    ListDataset,
    check_fraction,
    check_positive,
    loader,
    pad_collate,
)

_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True


def _split_documents(docs: list[tuple[str, str]], val_fraction: float, seed: int) -> tuple[str, str]:
    """Whole documents to validation (seeded order) until they hold ``val_fraction`` of the characters; a single
    document is split at a line break near ``1 - val_fraction`` of its length (its tail is the validation text)."""
    docs = [(n, t) for n, t in docs if t.strip()]
    if not docs:
        raise ValueError("the text source is empty")
    if len(docs) == 1:
        text = docs[0][1]
        cut = int(len(text) * (1.0 - val_fraction))
        nl = text.rfind("\n", 0, cut)
        cut = nl if nl > len(text) // 2 else cut
        while cut < len(text) and not text[cut].isspace():  # never cut inside a word
            cut += 1
        return text[:cut], text[cut:]
    order = np.random.default_rng(seed).permutation(len(docs))
    total = sum(len(t) for _, t in docs)
    val_idx: set[int] = set()
    size = 0
    for i in order[:-1]:  # at least one training document
        if size >= val_fraction * total:
            break
        val_idx.add(int(i))
        size += len(docs[i][1])
    train = "\n\n".join(t for i, (_, t) in enumerate(docs) if i not in val_idx)
    val = "\n\n".join(t for i, (_, t) in enumerate(docs) if i in val_idx)
    return train, val


class _Windows:
    """Windows of at most ``seq_len`` byte ids that start at a word start and end before a cut word."""

    def __init__(self, text: str, seq_len: int) -> None:
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        self.ids = raw.astype(np.int64) + NUM_SPECIAL
        self.space = _WHITESPACE[raw]
        self.seq_len = seq_len
        n = len(raw)
        prev_space = np.concatenate([[True], self.space[:-1]])
        self.word_starts = np.flatnonzero(~self.space & prev_space)
        full = self.word_starts[self.word_starts <= n - seq_len]
        self.starts = full if len(full) else self.word_starts[:1]

    def end(self, start: int) -> int:
        end = min(start + self.seq_len, len(self.ids))
        if end < len(self.ids) and not self.space[end]:  # the window would cut a word: end at the last space
            spaces = np.flatnonzero(self.space[start:end])
            if len(spaces):
                end = start + int(spaces[-1])
        return end

    def window(self, start: int) -> list[int]:
        return self.ids[start : self.end(start)].tolist()

    def tiling(self) -> list[int]:
        """Starts of consecutive windows covering the whole text once (the validation windows)."""
        out, i = [], 0
        ws = self.word_starts
        while True:
            k = np.searchsorted(ws, i)
            if k >= len(ws):
                return out
            start = int(ws[k])
            out.append(start)
            i = self.end(start)


def _mask_one(collator: WholeWordMaskingCollator, ids: list[int], mask_seed: int) -> dict[str, torch.Tensor]:
    collator.generator = torch.Generator().manual_seed(int(mask_seed))
    enc = collator([ids])
    return {"input_ids": enc.input_ids[0], "attention_mask": enc.attention_mask[0], "labels": enc.labels[0]}


class _MaskedWindow:
    """``(start, mask_seed)`` -> the masked window at ``start`` (picklable for worker processes)."""

    def __init__(self, windows: _Windows, collator: WholeWordMaskingCollator) -> None:
        self.windows, self.collator = windows, collator

    def __call__(self, description: tuple[int, int]) -> dict[str, torch.Tensor]:
        start, mask_seed = description
        return _mask_one(self.collator, self.windows.window(start), mask_seed)


def _check_source(path: str | None, dataset: str | None) -> None:
    if path is not None and dataset is not None:
        raise ValueError("give either path or dataset, not both")
    if path is not None and not Path(path).expanduser().exists():
        raise ValueError(f"data path {path!r} does not exist")


class TextDataModule(L.LightningDataModule):
    """Byte masked-language-modelling data with whole-word (``masking="whole_word"``, the paper's) or single-byte
    (``masking="byte"``) masking.

    Source: ``path`` (a UTF-8 text file, or a folder of ``.txt``/``.md`` files read recursively), ``dataset`` (a
    Hugging Face dataset name, local dataset folder or data file, column ``text_column``), or neither: the embedded
    ``pydoc_data.topics`` prose of the standard library. Validation text is unseen: whole topics/files/rows go to
    validation (``val_fraction`` of the characters), a single file is split at a line break.

    Training: each epoch draws ``len(train bytes) // seq_len`` windows (seeded per epoch) of at most ``seq_len``
    bytes, starting at a word start and ending before a word the window would cut; each word (or byte) is
    masked with ``mask_prob`` (seeded per window). Validation: consecutive windows covering the validation text
    once, with masks fixed at setup (the same every epoch). Batches are padded to ``seq_len``:
    ``{"input_ids", "attention_mask", "labels"}`` ``[B, seq_len]`` long, labels -100 except at masked bytes.
    """

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        text_column: str = "text",
        seq_len: int = 256,
        batch_size: int = 32,
        mask_prob: float = 0.15,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        masking: str = "whole_word",
    ) -> None:
        super().__init__()
        _check_source(path, dataset)
        check_choice(masking, tuple(MASKING_COLLATORS), "masking")
        check_positive(seq_len=seq_len, batch_size=batch_size)
        check_fraction("val_fraction", val_fraction)
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob!r}")
        if path is not None:
            text_files(path)  # fails early on an empty folder
        self.save_hyperparameters()
        self.path, self.dataset, self.dataset_config, self.text_column = path, dataset, dataset_config, text_column
        self.seq_len, self.batch_size, self.mask_prob = seq_len, batch_size, mask_prob
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.masking = masking
        self.collator = MASKING_COLLATORS[masking](ByteTokenizer(), mask_prob=mask_prob, max_length=seq_len)
        self.train_text: str | None = None
        self.val_text: str | None = None
        self._val_items: list[dict[str, torch.Tensor]] | None = None

    # ---------------------------------------------------------------- sources
    def _read(self) -> tuple[str, str]:
        if self.path is not None:
            return _split_documents(read_texts(self.path), self.val_fraction, self.seed)
        if self.dataset is not None:
            return self._read_dataset()
        return _split_documents(sorted(embedded_topics().items()), self.val_fraction, self.seed)

    def _read_dataset(self) -> tuple[str, str]:
        dd = load_hf_dataset(self.dataset, self.dataset_config)
        splits = list(dd.keys())
        train_name = "train" if "train" in dd else splits[0]
        source = f"dataset {self.dataset!r} split {train_name!r}"
        if self.text_column not in dd[train_name].column_names:
            raise ValueError(
                f"{source} has no column {self.text_column!r}; columns found: {', '.join(dd[train_name].column_names)}"
            )
        train_rows = [t for t in dd[train_name][self.text_column] if t]
        val_name = next((s for s in ("validation", "valid", "val", "dev", "test") if s in dd and s != train_name), None)
        if val_name is not None and self.text_column in dd[val_name].column_names:
            val_rows = [t for t in dd[val_name][self.text_column] if t]
            return "\n\n".join(train_rows), "\n\n".join(val_rows)
        docs = [(str(i), t) for i, t in enumerate(train_rows)]
        return _split_documents(docs, self.val_fraction, self.seed)

    # ---------------------------------------------------------------- Lightning
    def setup(self, stage: str | None = None) -> None:
        if self.train_text is not None:
            return
        train, val = self._read()
        if not train.strip() or not val.strip():
            raise ValueError(
                f"text source {self.path or self.dataset or 'pydoc_data.topics'!r} is too small to "
                "split into training and validation text"
            )
        self.train_text, self.val_text = train, val
        self.train_windows = _Windows(train, self.seq_len)
        self.val_windows = _Windows(val, self.seq_len)
        self.windows_per_epoch = max(1, len(self.train_windows.ids) // self.seq_len)
        starts = self.val_windows.tiling()
        seeds = np.random.default_rng([self.seed, 1]).integers(0, 2**62, len(starts))
        self._val_items = [_mask_one(self.collator, self.val_windows.window(s), int(m)) for s, m in zip(starts, seeds)]

    def _draw(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        starts = self.train_windows.starts
        picks = rng.choice(len(starts), size=n, replace=n > len(starts))
        seeds = rng.integers(0, 2**62, size=n)
        return [(int(starts[p]), int(s)) for p, s in zip(picks, seeds)]

    def train_dataloader(self):
        self.setup()
        sampler = EpochSampler(self._draw, self.windows_per_epoch, self.seed)
        dataset = DescribedDataset(_MaskedWindow(self.train_windows, self.collator), self.windows_per_epoch)
        return loader(dataset, self.batch_size, self.num_workers, FixedLengthCollate(self.seq_len), sampler=sampler)

    def val_dataloader(self):
        self.setup()
        return loader(ListDataset(self._val_items), self.batch_size, self.num_workers, FixedLengthCollate(self.seq_len))

    def unigram_baseline(self) -> tuple[int, float]:
        """``(id, accuracy)``: the most frequent masked byte id of the validation set and the masked-byte accuracy
        of always predicting it (the baseline a trained model must beat)."""
        self.setup()
        labels = torch.cat([it["labels"] for it in self._val_items])
        labels = labels[labels != IGNORE_INDEX]
        if labels.numel() == 0:
            raise ValueError("the validation set has no masked bytes")
        counts = torch.bincount(labels)
        best = int(counts.argmax())
        return best, float(counts[best]) / labels.numel()


class TextClassificationDataModule(L.LightningDataModule):
    """Text classification from tables or Hugging Face datasets.

    ``path``: a folder with ``{train_split or train}.{tsv,csv,jsonl,json}`` and ``{val_split, val, validation or
    dev}.{...}`` (without a validation file, or for a single file: a seeded 90/10 split). TSV files have a header
    line and no quoting (the GLUE layout), CSV files standard quoting, JSONL one object per line. ``dataset``: a
    Hugging Face dataset (name, local folder or data file) with splits ``train_split`` and ``val_split``.
    Labels are ints (class ids) or strings (mapped to ids in sorted order); see ``num_classes``/``label_names``.
    Batches: ``input_ids``/``attention_mask`` ``[B, L]`` long, padded per batch, truncated to ``max_length``
    bytes (no special tokens, like the official tokenizer); ``labels`` ``[B]`` long.
    """

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        text_column: str = "sentence",
        label_column: str = "label",
        max_length: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_source(path, dataset)
        if path is None and dataset is None:
            raise ValueError(
                "TextClassificationDataModule needs path (a folder or a .tsv/.csv/.jsonl file) or "
                "dataset (a Hugging Face dataset)"
            )
        check_positive(max_length=max_length, batch_size=batch_size)
        self.save_hyperparameters()
        self.path, self.dataset, self.dataset_config = path, dataset, dataset_config
        self.train_split, self.val_split = train_split, val_split
        self.text_column, self.label_column = text_column, label_column
        self.max_length, self.batch_size, self.num_workers, self.seed = max_length, batch_size, num_workers, seed
        self._train: list[dict[str, torch.Tensor]] | None = None
        self._val: list[dict[str, torch.Tensor]] = []
        self._label_names: list[str] = []

    # ---------------------------------------------------------------- sources
    def _rows_from_path(self) -> tuple[list[dict], list[dict] | None, str, str]:
        p = Path(self.path).expanduser()
        if p.is_dir():
            train_file = find_split_file(p, [self.train_split, "train"])
            if train_file is None:
                raise ValueError(f"data folder {self.path!r} has no {self.train_split}.tsv/.csv/.jsonl file")
            val_file = find_split_file(p, [self.val_split, "val", "validation", "dev"])
            train = read_table(train_file)
            val = read_table(val_file) if val_file is not None else None
            return train, val, str(train_file), str(val_file)
        return read_table(p), None, str(p), str(p)

    def _rows_from_dataset(self) -> tuple[list[dict], list[dict], str, str, list[str] | None]:
        dd = load_hf_dataset(self.dataset, self.dataset_config)
        out = []
        for split in (self.train_split, self.val_split):
            if split not in dd:
                raise ValueError(
                    f"dataset {self.dataset!r} has no split {split!r}; splits found: {', '.join(dd.keys())}"
                )
            ds = dd[split]
            for c in (self.text_column, self.label_column):
                if c not in ds.column_names:
                    raise ValueError(
                        f"dataset {self.dataset!r} split {split!r} has no column {c!r}; columns "
                        f"found: {', '.join(ds.column_names)}"
                    )
            out.append(
                [
                    {self.text_column: t, self.label_column: y}
                    for t, y in zip(ds[self.text_column], ds[self.label_column])
                ]
            )
        feature = dd[self.train_split].features.get(self.label_column)
        names = list(feature.names) if hasattr(feature, "names") else None
        return (
            out[0],
            out[1],
            f"dataset {self.dataset!r} split {self.train_split!r}",
            f"dataset {self.dataset!r} split {self.val_split!r}",
            names,
        )

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        names = None
        if self.path is not None:
            train, val, train_src, val_src = self._rows_from_path()
        else:
            train, val, train_src, val_src, names = self._rows_from_dataset()
        check_columns(train, (self.text_column, self.label_column), train_src)
        if val is None:
            order = np.random.default_rng(self.seed).permutation(len(train))
            n_val = max(1, len(train) // 10)
            if len(train) < 2:
                raise ValueError(f"{train_src} has {len(train)} rows; need at least 2 to split off validation")
            val = [train[i] for i in order[:n_val]]
            train = [train[i] for i in np.sort(order[n_val:])]
        else:
            check_columns(val, (self.text_column, self.label_column), val_src)
        train_y, val_y, self._label_names = _encode_labels(
            [r[self.label_column] for r in train], [r[self.label_column] for r in val], names, train_src
        )
        tok = ByteTokenizer()

        def encode(rows: list[dict], ys: list[int], src: str) -> list[dict[str, torch.Tensor]]:
            items = []
            for r, y in zip(rows, ys):
                text = r[self.text_column]
                if not isinstance(text, str):
                    raise ValueError(f"{src}: column {self.text_column!r} holds {type(text).__name__}, not text")
                ids = tok.encode(text or " ")[: self.max_length]  # an empty text reads as one space
                items.append(
                    {
                        "input_ids": torch.tensor(ids, dtype=torch.long),
                        "attention_mask": torch.ones(len(ids), dtype=torch.long),
                        "labels": torch.tensor(y, dtype=torch.long),
                    }
                )
            return items

        self._train, self._val = encode(train, train_y, train_src), encode(val, val_y, val_src)

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self._label_names)

    @property
    def label_names(self) -> list[str]:
        self.setup()
        return list(self._label_names)

    def train_dataloader(self):
        self.setup()
        return loader(
            ListDataset(self._train), self.batch_size, self.num_workers, pad_collate, shuffle=True, seed=self.seed
        )

    def val_dataloader(self):
        self.setup()
        return loader(ListDataset(self._val), self.batch_size, self.num_workers, pad_collate)


def _as_int(v: Any) -> int | None:
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


def _encode_labels(
    train: list[Any], val: list[Any], names: list[str] | None, source: str
) -> tuple[list[int], list[int], list[str]]:
    """Class ids for train/val labels and the class names: ints stay ids (names "0".."K-1" unless the dataset
    names them), anything else becomes ids in sorted order of the distinct values."""
    ints = [_as_int(v) for v in train + val]
    if all(i is not None for i in ints):
        if min(ints) < 0:
            raise ValueError(f"{source}: labels must be class ids >= 0, found {min(ints)}")
        k = max(ints) + 1
        if names is not None and len(names) >= k:
            label_names = list(names)
        else:
            label_names = [str(i) for i in range(k)]
        return ints[: len(train)], ints[len(train) :], label_names
    values = [str(v) for v in train + val]
    label_names = sorted(set(values))
    index = {n: i for i, n in enumerate(label_names)}
    ids = [index[v] for v in values]
    return ids[: len(train)], ids[len(train) :], label_names
