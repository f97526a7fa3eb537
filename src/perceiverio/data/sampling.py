"""Reproducible per-epoch sampling and the other pieces the data modules share: :func:`loader` (with
:class:`SplitLoaders`), padding collators and argument checks.

:class:`EpochSampler` yields a fresh, seeded list of sample descriptions every epoch (for example ``(start,
mask_seed)`` pairs of text windows); the dataset turns a description into a sample. Lightning calls
``set_epoch(epoch)`` before every epoch (also through its ``DistributedSamplerWrapper`` under DDP, which then splits
the list between ranks: every rank draws the same list, so the split is consistent). Without ``set_epoch`` calls
(a plain PyTorch loop), each new iteration counts as the next epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import PAD_ID


class EpochSampler(Sampler):
    """``draw(rng, n)`` -> a list of ``n`` sample descriptions, called with ``numpy.random.default_rng([seed,
    epoch])`` at the start of every epoch."""

    def __init__(self, draw: Callable[[np.random.Generator, int], list[Any]], num_samples: int, seed: int) -> None:
        self.draw = draw
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0
        self._explicit = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._explicit = True

    def __len__(self) -> int:
        return self.num_samples

    def samples(self, epoch: int) -> list[Any]:
        return self.draw(np.random.default_rng([self.seed, epoch]), self.num_samples)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        if not self._explicit:
            self.epoch += 1
        return iter(self.samples(epoch))


class DescribedDataset(Dataset):
    """A map-style dataset whose "indices" are the descriptions an :class:`EpochSampler` yields."""

    def __init__(self, make: Callable[[Any], Any], num_samples: int) -> None:
        self.make = make
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, description: Any) -> Any:
        return self.make(description)


class ListDataset(Dataset):
    """Items of a list (precomputed, fixed samples such as validation sets)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable | None = None,
    sampler: Sampler | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with our defaults: seeded shuffling, persistent workers when there are workers."""
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=generator,
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


def check_positive(**values: float) -> None:
    for name, v in values.items():
        if v is None or v <= 0:
            raise ValueError(f"{name} must be positive, got {v!r}")


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def check_image_size(image_size: Any, minimum: int = 1) -> tuple[int, int]:
    """``image_size`` as an ``(H, W)`` tuple of ints, each at least ``minimum``."""
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < minimum:
        limit = "positive sizes" if minimum == 1 else f"sizes ≥ {minimum}"
        raise ValueError(f"image_size must be (H, W) with {limit}, got {size!r}")
    return size


class SplitLoaders:
    """The two data loaders of a data module whose ``setup()`` builds ``train_set`` and ``val_set``: training
    batches shuffled (seeded by ``seed``), validation batches in order; ``batch_size`` and ``num_workers`` from the
    module's attributes."""

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return loader(self.train_set, self.batch_size, self.num_workers, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return loader(self.val_set, self.batch_size, self.num_workers)


def pad_collate(items: list[dict[str, torch.Tensor]], length: int | None = None) -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` (PAD), ``attention_mask`` (0) and 1-D ``labels`` (-100) to ``length`` (None: the longest
    item); other keys are stacked."""
    n = max(len(it["input_ids"]) for it in items) if length is None else length
    out = {
        "input_ids": torch.full((len(items), n), PAD_ID, dtype=torch.long),
        "attention_mask": torch.zeros((len(items), n), dtype=torch.long),
    }
    per_token = (
        "labels" in items[0] and items[0]["labels"].dim() == 1 and len(items[0]["labels"]) == len(items[0]["input_ids"])
    )
    if per_token:
        out["labels"] = torch.full((len(items), n), IGNORE_INDEX, dtype=torch.long)
    for b, it in enumerate(items):
        k = len(it["input_ids"])
        out["input_ids"][b, :k] = it["input_ids"]
        out["attention_mask"][b, :k] = it.get("attention_mask", torch.ones(k, dtype=torch.long))
        if per_token:
            out["labels"][b, :k] = it["labels"]
    if "labels" in items[0] and not per_token:
        out["labels"] = torch.stack([it["labels"] for it in items])
    return out


class FixedLengthCollate:
    """:func:`pad_collate` to a fixed length (picklable)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return pad_collate(items, self.length)
