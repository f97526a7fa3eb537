"""Reproducible, resumable per-epoch sampling and the other pieces the data modules share: :func:`loader` (with
:class:`SplitLoaders`), datasets that serve whole batches (:class:`BatchedDataset`), padding collators and argument
and label checks.

:class:`EpochSampler` yields a fresh, seeded list of sample descriptions every epoch (for example ``(start,
mask_seed)`` pairs of text windows, or a permutation of the dataset: :func:`permutation`); the dataset turns a
description into a sample. The order of epoch ``e`` is a function of ``(seed, e)`` alone. Lightning calls
``set_epoch(epoch)`` before every epoch (also through its ``DistributedSamplerWrapper`` under DDP, which then splits
the list between ranks: every rank draws the same list, so the split is consistent). Without ``set_epoch`` calls
(a plain PyTorch loop), each new iteration counts as the next epoch.

Every loader of :func:`loader` is a :class:`ResumableLoader`: Lightning saves its position (epoch, batches already
delivered) in each checkpoint and restores it on resume, and the resumed epoch continues with the next batch.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, SequentialSampler

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


def permutation(rng: np.random.Generator, n: int) -> list[int]:
    """The ``draw`` of a shuffled :class:`EpochSampler`: a permutation of ``range(n)``."""
    return rng.permutation(n).tolist()


class ResumableSampler(Sampler):
    """The sampler a :class:`ResumableLoader` iterates: ``sampler``'s order, without its first items in a resumed
    epoch (:meth:`resume`). ``set_epoch`` reaches ``sampler`` when an iteration starts; without ``set_epoch`` calls,
    each iteration after the first counts as the next epoch. ``epoch``: that of the current (or next) iteration."""

    def __init__(self, sampler: Sampler | Sequence[Any]) -> None:
        self.sampler = sampler
        self.epoch = 0
        self.skipped = 0  # items left out at the start of the current iteration
        self._explicit = False
        self._started = False
        self._skip: tuple[int, int] | None = None  # (epoch, items) for a resumed epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit = int(epoch), True

    def resume(self, epoch: int, items: int) -> None:
        """The next iteration is epoch ``epoch`` and leaves out its first ``items`` items (only if it is that
        epoch: a later ``set_epoch`` to another one cancels the skip)."""
        self.epoch, self._started, self._skip = int(epoch), False, (int(epoch), int(items))

    def __iter__(self) -> Iterator[Any]:
        if self._started and not self._explicit:
            self.epoch += 1
        self._started = True
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        self.skipped = self._skip[1] if self._skip is not None and self._skip[0] == self.epoch else 0
        self._skip = None
        return itertools.islice(iter(self.sampler), self.skipped, None)


class ResumableLoader(DataLoader):
    """A DataLoader (map-style datasets) that knows its position: ``state_dict()`` -> ``{"epoch", "batches"}``
    (the epoch and how many of its batches were delivered); ``load_state_dict`` makes the next iteration that
    epoch's remaining batches, the skipped ones never loaded. Lightning saves the state of the training loader in
    every checkpoint and loads it when resuming, before the first batch, so a run resumed from a mid-epoch
    checkpoint trains on the batches the uninterrupted run would have. Takes DataLoader's arguments (not
    ``shuffle=True``: shuffle with ``sampler=EpochSampler(permutation, len(dataset), seed)``, as :func:`loader`
    does); the given sampler (default: in order) is wrapped in a :class:`ResumableSampler`. The sampler runs in
    the main process, so the position is exact with worker processes too; an iteration starts its workers' index
    stream at its first batch (after Lightning's ``set_epoch``)."""

    def __init__(self, dataset: Dataset, *args: Any, sampler: Sampler | None = None, **kwargs: Any) -> None:
        if isinstance(dataset, IterableDataset):
            raise TypeError("ResumableLoader needs a map-style dataset, got an IterableDataset")
        if kwargs.get("shuffle"):
            raise ValueError(
                "ResumableLoader shuffles through its sampler: pass sampler=EpochSampler(permutation, "
                "len(dataset), seed) instead of shuffle=True"
            )
        if kwargs.get("batch_sampler") is None:
            sampler = ResumableSampler(SequentialSampler(dataset) if sampler is None else sampler)
        super().__init__(dataset, *args, sampler=sampler, **kwargs)
        self.epoch, self.batches = 0, 0  # the position: batches of `epoch` delivered (or skipped on resume)

    def __iter__(self) -> Iterator[Any]:
        return _PositionTracker(self)

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        if isinstance(sampler, ResumableSampler) and sampler.epoch != self.epoch:  # moved on, nothing delivered yet
            return {"epoch": sampler.epoch, "batches": 0}
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError("this ResumableLoader was built with a batch_sampler: it cannot skip batches")
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):  # the epoch was complete: the next one from its start
            epoch, batches = epoch + 1, 0
        self.sampler.resume(epoch, batches * (self.batch_size or 1))
        self.epoch, self.batches = epoch, batches


class _PositionTracker(Iterator):
    """A :class:`ResumableLoader`'s iterator: DataLoader's, created at the first ``next`` (after ``set_epoch``),
    counting the batches it delivers into the loader's position."""

    def __init__(self, loader: ResumableLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        loader = self.loader
        first = self.iterator is None
        if first:
            self.iterator = DataLoader.__iter__(loader)
        try:
            batch = next(self.iterator)
        finally:
            if first and isinstance(loader.sampler, ResumableSampler):
                loader.epoch = loader.sampler.epoch
                loader.batches = loader.sampler.skipped // (loader.batch_size or 1)
        loader.batches += 1
        return batch


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
    """Items of a list (precomputed, fixed samples such as validation sets), or ``make(items[i])`` when ``make``
    is given (samples built when loaded from fixed descriptions)."""

    def __init__(self, items: list[Any], make: Callable[[Any], Any] | None = None) -> None:
        self.items, self.make = items, make

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i] if self.make is None else self.make(self.items[i])


class BatchedDataset(Dataset):
    """A map-style dataset that builds a whole batch at once: the DataLoader's fetcher calls ``__getitems__`` with
    the indices of a batch (the sampler's order, so shuffling and distributed sampling are unchanged) and gets the
    batch already stacked, with no per-item work and no collation (:func:`loader` passes :func:`collated`).
    Subclasses implement ``__len__`` and ``batch(indices [B] long) -> {name: [B, ...] tensor}``; ``dataset[i]``
    is item ``i`` of the one-item batch."""

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.batch(torch.tensor([int(i)])).items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.batch(torch.as_tensor(indices, dtype=torch.long))


def collated(batch: Any) -> Any:
    """The collate function of a :class:`BatchedDataset`: its batches arrive collated (module level: picklable)."""
    return batch


def loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable | None = None,
    sampler: Sampler | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> ResumableLoader:
    """A :class:`ResumableLoader` with our defaults: ``shuffle`` draws a fresh permutation each epoch from
    ``(seed, epoch)`` (when no ``sampler`` is given), persistent workers when there are workers; a
    :class:`BatchedDataset` serves each batch in one call. The loader's own generator, seeded by ``seed``, seeds the
    workers, so iterating never draws from the global torch generator."""
    if collate_fn is None and isinstance(dataset, BatchedDataset):
        collate_fn = collated
    if shuffle and sampler is None:
        sampler = EpochSampler(permutation, len(dataset), seed)
    if shuffle and batch_size > len(dataset):
        warnings.warn(
            f"batch_size {batch_size} is larger than the {len(dataset)} training examples: every batch is the "
            "whole training set",
            stacklevel=2,
        )
    return ResumableLoader(
        dataset,
        batch_size=min(batch_size, max(len(dataset), 1)),  # a larger batch is the whole set (and no huge lists)
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(int(seed)),
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


def check_paths(**paths: Any) -> None:
    """ValueError naming the argument unless each given path is a non-empty string or ``os.PathLike`` (an empty
    string would silently read the current folder)."""
    for name, value in paths.items():
        if value is None:
            continue
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ValueError(f"{name} must be a file or folder path, got {value!r}")


def check_source(path: str | None, dataset: str | None) -> None:
    """``path`` and ``dataset`` are alternatives; a given ``path`` must exist."""
    if path is not None and dataset is not None:
        raise ValueError(f"give either path or dataset, not both; got path={path!r} and dataset={dataset!r}")
    if path is not None and not Path(path).expanduser().exists():
        raise ValueError(f"data path {path!r} does not exist")


def check_labels(
    labels: Sequence[int] | np.ndarray, num_classes: int, source: str, unit: str = "row", first: int = 1
) -> None:
    """A one-line ``ValueError`` naming ``source`` and the ``unit`` (numbered from ``first``) of the first label
    outside ``[0, num_classes)``."""
    a = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((a < 0) | (a >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{source} {unit} {i + first}: label {int(a[i])} is outside [0, {num_classes}) ({num_classes} classes; "
            f"{len(bad)} such label(s) in all)"
        )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_positive(**values: float) -> None:
    """ValueError naming the argument unless each value is a positive number (ints stay ints: see check_count)."""
    for name, v in values.items():
        if not _number(v) or not v > 0 or v == float("inf"):
            raise ValueError(f"{name} must be positive, got {v!r}")


MAX_WORKERS = 256


#: the most samples a count may ask for per epoch (generated pairs, clips, audio samples of a clip): an epoch's
#: order is drawn as one list, and 2^40 of them would not fit in memory
MAX_SAMPLES = 10_000_000


def check_count(minimum: int = 1, maximum: int | None = None, **values: Any) -> None:
    """ValueError naming the argument unless each value is an int of at least ``minimum`` and, when given, at most
    ``maximum`` (batch sizes, lengths, worker counts; ``num_workers`` at most :data:`MAX_WORKERS`)."""
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{name} must be an int of at least {minimum}, got {v!r}")
        if name == "num_workers" and v > MAX_WORKERS:
            raise ValueError(f"num_workers must be at most {MAX_WORKERS} (worker processes), got {v}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{name} must be at most {maximum}, got {v}")


def check_fraction(name: str, value: float, low_inclusive: bool = False) -> None:
    if not _number(value) or not (0.0 <= value < 1.0 if low_inclusive else 0.0 < value < 1.0):
        raise ValueError(f"{name} must be in {'[' if low_inclusive else '('}0, 1), got {value!r}")


#: the largest side of a data module's ``image_size`` (a batch of larger images would not fit in memory)
MAX_IMAGE_SIDE = 8192


def check_image_size(image_size: Any, minimum: int = 1) -> tuple[int, int]:
    """``image_size`` as an ``(H, W)`` tuple of ints, each in ``[minimum, MAX_IMAGE_SIDE]``; a ValueError naming
    ``image_size`` otherwise (also for floats, strings and bools, which ``int()`` would quietly convert)."""
    try:
        size = tuple(image_size) if not isinstance(image_size, (str, bytes)) else None
    except TypeError:
        size = None
    if (
        size is None
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        raise ValueError(f"image_size must be (H, W), two ints, got {image_size!r}")
    size = (int(size[0]), int(size[1]))
    if min(size) < minimum or max(size) > MAX_IMAGE_SIDE:
        raise ValueError(f"image_size must be (H, W) with sizes in [{minimum}, {MAX_IMAGE_SIDE}], got {size!r}")
    return size


class SplitLoaders:
    """The two data loaders of a data module whose ``setup()`` builds ``train_set`` and ``val_set``: training
    batches shuffled (a permutation per epoch from ``seed`` and the epoch), validation batches in order;
    ``batch_size`` and ``num_workers`` from the module's attributes."""

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
