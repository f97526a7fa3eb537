"""Byte-level masked language modelling data (text classification: :mod:`perceiverio.data.text_classification`).

Batches are ``{"input_ids": [B, L] long, "attention_mask": [B, L] long (1 = byte, 0 = padding), "labels": ...}``
with the official byte ids of :class:`~perceiverio.tokenizer.ByteTokenizer` (byte b -> b + 6, PAD 0, MASK 3).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from ..core.config import check_choice
from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import NUM_SPECIAL, ByteTokenizer
from .masking import MASKING_COLLATORS, WholeWordMaskingCollator
from .predict import (
    TEXT_EXPECTED,
    PredictTexts,
    check_mask_char,
    check_predict_path,
    collate_texts,
    missing_predict_path,
    text_lines,
)
from .readers.text import embedded_topics, load_hf_dataset, read_texts, text_files
from .sampling import (
    DescribedDataset,
    EpochSampler,
    FixedLengthCollate,
    ListDataset,
    check_count,
    check_fraction,
    check_paths,
    check_source,
    loader,
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


class TextDataModule(L.LightningDataModule):
    """Byte masked-language-modelling data with whole-word (``masking="whole_word"``, the paper's) or single-byte
    (``masking="byte"``) masking.

    Source: ``path`` (a UTF-8 text file, or a folder of ``.txt``/``.md`` files read recursively), ``dataset`` (a
    Hugging Face dataset name, local dataset folder or data file, column ``text_column``), or neither: the embedded
    ``pydoc_data.topics`` prose of the standard library; ``add_embedded=True`` adds that prose to a ``path`` or
    ``dataset`` source (e.g. unlabelled task sentences plus general English, the SST-2 pre-training). Validation
    text is unseen: whole topics/files/rows go to validation (``val_fraction`` of the characters), a single file is
    split at a line break.

    Training: each epoch draws ``len(train bytes) // seq_len`` windows (seeded per epoch) of at most ``seq_len``
    bytes, starting at a word start and ending before a word the window would cut; each word (or byte) is
    masked with ``mask_prob`` (seeded per window). Validation: consecutive windows covering the validation text
    once, with masks fixed at setup (the same every epoch). Test (``perceiverio test``): the text of ``test_path``
    (a file or folder, like ``path``) tiled and masked the same way; without it ``test`` raises a ValueError.
    Predict (``perceiverio predict``): the lines of ``predict_path``, where each ``mask_char`` is a byte to fill.
    Batches are padded to ``seq_len``:
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
        add_embedded: bool = False,
        test_path: str | None = None,
        predict_path: str | None = None,
        mask_char: str = "_",
    ) -> None:
        super().__init__()
        check_paths(path=path, test_path=test_path)
        check_source(path, dataset)
        check_choice(masking, tuple(MASKING_COLLATORS), "masking")
        check_count(seq_len=seq_len, batch_size=batch_size)
        check_count(0, num_workers=num_workers)
        check_fraction("val_fraction", val_fraction)
        if isinstance(mask_prob, bool) or not isinstance(mask_prob, (int, float)) or not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob!r}")
        if path is not None:
            text_files(path)  # fails early on an empty folder
        if test_path is not None:
            text_files(test_path)
        predict_path = check_predict_path(predict_path, TEXT_EXPECTED)
        check_mask_char(mask_char)
        self.save_hyperparameters()
        self.path, self.dataset, self.dataset_config, self.text_column = path, dataset, dataset_config, text_column
        self.seq_len, self.batch_size, self.mask_prob = seq_len, batch_size, mask_prob
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.masking, self.add_embedded, self.test_path = masking, bool(add_embedded), test_path
        self.predict_path, self.mask_char = predict_path, mask_char
        self.collator = MASKING_COLLATORS[masking](ByteTokenizer(), mask_prob=mask_prob, max_length=seq_len)
        self.train_text: str | None = None
        self.val_text: str | None = None
        self._val_items: list[dict[str, torch.Tensor]] | None = None
        self._test_items: list[dict[str, torch.Tensor]] | None = None

    # ---------------------------------------------------------------- sources
    def _read(self) -> tuple[str, str]:
        train, val = self._read_source()
        if self.add_embedded and (self.path is not None or self.dataset is not None):
            more_train, more_val = _split_documents(sorted(embedded_topics().items()), self.val_fraction, self.seed)
            train, val = f"{train}\n\n{more_train}", f"{val}\n\n{more_val}"
        return train, val

    def _read_source(self) -> tuple[str, str]:
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
        source = f"path {self.path!r}" if self.path else f"dataset {self.dataset or 'pydoc_data.topics'!r}"
        if not train.strip() or not val.strip():
            raise ValueError(
                f"{source}: the text is too small to split into training and validation text (val_fraction "
                f"{self.val_fraction}); give more text"
            )
        size = len(train.encode("utf-8"))
        if self.seq_len > size:  # every batch is padded to seq_len: refuse before allocating it
            raise ValueError(
                f"seq_len {self.seq_len} is longer than the training text of {source} ({size} bytes): lower "
                "seq_len or give more text"
            )
        self.train_text, self.val_text = train, val
        self.train_windows = _Windows(train, self.seq_len)
        self.val_windows = _Windows(val, self.seq_len)
        self.windows_per_epoch = max(1, len(self.train_windows.ids) // self.seq_len)
        self._val_items = self._fixed_items(self.val_windows, 1)

    def _fixed_items(self, windows: _Windows, stream: int) -> list[dict[str, torch.Tensor]]:
        """Consecutive windows covering ``windows`` once, each masked with a seed fixed by (seed, stream)."""
        starts = windows.tiling()
        seeds = np.random.default_rng([self.seed, stream]).integers(0, 2**62, len(starts))
        return [_mask_one(self.collator, windows.window(s), int(m)) for s, m in zip(starts, seeds)]

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

    def test_dataloader(self):
        """Masked windows tiling the ``test_path`` text once (fixed masks); a ValueError when it is not set."""
        if self.test_path is None:
            raise ValueError(
                "masked-LM data has no test set: give test_path (a UTF-8 text file or a folder of .txt/.md files "
                "never used in training), e.g. --data.test_path held_out.txt"
            )
        if self._test_items is None:
            text = "\n\n".join(t for _, t in read_texts(self.test_path))
            if not text.strip():
                raise ValueError(f"test_path {self.test_path!r} holds no text")
            self._test_items = self._fixed_items(_Windows(text, self.seq_len), 2)
        collate = FixedLengthCollate(self.seq_len)
        return loader(ListDataset(self._test_items), self.batch_size, self.num_workers, collate)

    def predict_dataloader(self):
        """``predict_path`` text, one example per non-empty line, cut to ``seq_len`` bytes; every ``mask_char`` is a
        masked byte for the model to fill (:mod:`perceiverio.data.predict`). A ValueError when it is not set."""
        if self.predict_path is None:
            raise missing_predict_path("TextDataModule", TEXT_EXPECTED)
        dataset = PredictTexts(text_lines(self.predict_path), self.seq_len, self.mask_char)
        return loader(dataset, self.batch_size, self.num_workers, collate_texts)

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
