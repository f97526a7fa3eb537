"""Byte windows for causal language modelling (Perceiver AR, :class:`~perceiverio.tasks.causal.CausalLanguageModel`).

Batches are ``{"input_ids": [B, W] long, "attention_mask": [B, W] long (1 = byte, 0 = left padding), "labels":
[B, W] long}`` with ``W = max_context + 1`` and the byte ids of :class:`~perceiverio.tokenizer.ByteTokenizer`
(byte b -> b + 6, PAD 0). The model reads ``input_ids[:, :-1]`` and its N latents predict ``labels[:, -N:]``
(-100: not scored). See :class:`CausalTextDataModule`.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import NUM_SPECIAL, PAD_ID
from .readers.text import embedded_topics, read_texts, text_files
from .sampling import DescribedDataset, EpochSampler, ListDataset, check_count, check_fraction, check_paths, loader


def text_bytes(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as byte ids ``[T]`` int64 (b + 6)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + NUM_SPECIAL


def split_bytes(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: the last ``val_fraction`` of the bytes held out (at least one byte on each side)."""
    cut = min(max(int(round(len(ids) * (1.0 - val_fraction))), 1), len(ids) - 1)
    return ids[:cut], ids[cut:]


def scoring_windows(ids: np.ndarray, max_context: int, num_latents: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive windows that score every byte of ``ids`` after the first exactly once: window k's latents
    predict bytes ``1 + kN .. (k+1)N`` from up to ``max_context`` bytes before each (the first windows see less);
    each window is ``max_context + 1`` long, left-padded, labels -100 on padding and on bytes scored before."""
    width, n, out = max_context + 1, min(num_latents, max_context), []
    first = 1  # the first byte not yet scored
    while first < len(ids):
        end = min(first + n, len(ids))  # this window scores bytes [first, end)
        start = max(0, end - width)
        window = torch.from_numpy(ids[start:end].copy())
        labels = window.clone()
        labels[: max(first - start, 0)] = IGNORE_INDEX
        pad = width - len(window)
        out.append(
            {
                "input_ids": torch.nn.functional.pad(window, (pad, 0), value=PAD_ID),
                "attention_mask": torch.nn.functional.pad(torch.ones_like(window), (pad, 0), value=0),
                "labels": torch.nn.functional.pad(labels, (pad, 0), value=IGNORE_INDEX),
            }
        )
        first = end
    return out


class _TrainWindow:
    """A start -> the training window there (picklable for worker processes)."""

    def __init__(self, ids: np.ndarray, width: int) -> None:
        self.ids, self.width = ids, width

    def __call__(self, start: int) -> dict[str, torch.Tensor]:
        window = torch.from_numpy(self.ids[start : start + self.width].copy())
        return {"input_ids": window, "attention_mask": torch.ones_like(window), "labels": window.clone()}


class CausalTextDataModule(L.LightningDataModule):
    """Byte windows for Perceiver AR training.

    Source: ``path`` (a UTF-8 text file, or a folder of ``.txt``/``.md`` files, read in sorted order and joined
    with blank lines) or, without it, the embedded ``pydoc_data.topics`` prose of the standard library (as the MLM
    main job). The last ``val_fraction`` of the bytes is the validation text (never trained on).

    Training: each epoch draws ``len(train bytes) // max_context`` windows of ``max_context + 1`` bytes at random
    starts in the training text (seeded by ``(seed, epoch)``; resumable mid-epoch like every data module).
    Validation: fixed consecutive windows that score every validation byte after the first exactly once (N =
    ``num_latents`` bytes per window, each predicted from up to ``max_context`` bytes before it), so
    ``val/bits_per_byte`` is the whole text's. Test: the same over the text of ``test_path``. ``num_latents``
    must match the model's (the configs link it).
    """

    def __init__(
        self,
        path: str | None = None,
        max_context: int = 512,
        num_latents: int = 64,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        test_path: str | None = None,
    ) -> None:
        super().__init__()
        check_paths(path=path, test_path=test_path)
        check_count(max_context=max_context, num_latents=num_latents, batch_size=batch_size)
        check_count(0, num_workers=num_workers)
        check_fraction("val_fraction", val_fraction)
        if path is not None:
            text_files(path)  # fails early on a missing path or an empty folder
        if test_path is not None:
            text_files(test_path)
        self.save_hyperparameters()
        self.path, self.test_path = path, test_path
        self.max_context, self.num_latents, self.batch_size = max_context, num_latents, batch_size
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.train_ids: np.ndarray | None = None
        self.val_ids: np.ndarray | None = None
        self._val_items: list[dict[str, torch.Tensor]] | None = None
        self._test_items: list[dict[str, torch.Tensor]] | None = None

    @property
    def source(self) -> str:
        return f"path {self.path!r}" if self.path is not None else "the embedded pydoc_data.topics text"

    def _text(self) -> str:
        docs = read_texts(self.path) if self.path is not None else sorted(embedded_topics().items())
        return "\n\n".join(t for _, t in docs)

    def setup(self, stage: str | None = None) -> None:
        if self.train_ids is not None:
            return
        ids = text_bytes(self._text())
        if len(ids) < 2:
            raise ValueError(f"{self.source} holds {len(ids)} bytes: too little text to train on")
        train, val = split_bytes(ids, self.val_fraction)
        if len(train) < self.max_context + 1:
            raise ValueError(
                f"max_context + 1 = {self.max_context + 1} bytes is longer than the training text of {self.source} "
                f"({len(train)} bytes): lower max_context or give more text"
            )
        self.train_ids, self.val_ids = train, val
        self.windows_per_epoch = max(1, len(train) // self.max_context)
        self._val_items = scoring_windows(val, self.max_context, self.num_latents)

    def _draw(self, rng: np.random.Generator, n: int) -> list[int]:
        return rng.integers(0, len(self.train_ids) - self.max_context, size=n).tolist()

    def train_dataloader(self):
        self.setup()
        sampler = EpochSampler(self._draw, self.windows_per_epoch, self.seed)
        dataset = DescribedDataset(_TrainWindow(self.train_ids, self.max_context + 1), self.windows_per_epoch)
        return loader(dataset, self.batch_size, self.num_workers, sampler=sampler)

    def val_dataloader(self):
        self.setup()
        return loader(ListDataset(self._val_items), self.batch_size, self.num_workers)

    def test_dataloader(self):
        """Scoring windows over the ``test_path`` text; a ValueError when it is not set."""
        if self.test_path is None:
            raise ValueError(
                "causal-LM data has no test set: give test_path (a UTF-8 text file or a folder of .txt/.md files "
                "never used in training), e.g. --data.test_path held_out.txt"
            )
        if self._test_items is None:
            ids = text_bytes("\n\n".join(t for _, t in read_texts(self.test_path)))
            if len(ids) < 2:
                raise ValueError(f"test_path {self.test_path!r} holds fewer than 2 bytes of text")
            self._test_items = scoring_windows(ids, self.max_context, self.num_latents)
        return loader(ListDataset(self._test_items), self.batch_size, self.num_workers)

    def unigram_bits_per_byte(self) -> float:
        """The baseline to beat: the cross-entropy in bits of the validation bytes under the byte frequencies of the
        training text (add-one smoothed over the 256 bytes)."""
        self.setup()
        counts = np.bincount(self.train_ids - NUM_SPECIAL, minlength=256).astype(np.float64) + 1.0
        probs = counts / counts.sum()
        return float(-np.log2(probs[self.val_ids[1:] - NUM_SPECIAL]).mean())
