"""Image classification data: scikit-learn digits (embedded), IDX files (MNIST/Fashion-MNIST) or image folders.

Batches: ``{"images": [B, C, H, W] float32, "labels": [B] long}``. Pixels are first scaled to [0, 1]; with
``normalize=True`` (default) each channel is then standardised with the mean and standard deviation of the training
images (attributes ``mean``/``std``, tuples of C floats; undo with ``x * std + mean`` before [0, 1]-based
augmentations).

Arrays (the digits, IDX files) are held in memory as one tensor and served a whole batch at a time
(:class:`ImageArray`); image files are read one at a time (:class:`ImageFiles`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .labels import check_class_ids, model_classes
from .predict import Indexed, check_predict_path, missing_predict_path, predict_files, relative_name
from .readers.image import (
    IMAGE_EXTENSIONS,
    find_idx_files,
    list_image_folder,
    load_digits,
    read_idx_dataset,
    read_image,
)
from .sampling import (
    BatchedDataset,
    SplitLoaders,
    check_count,
    check_fraction,
    check_image_size,
    check_labels,
    check_paths,
    loader,
)

MAX_STAT_IMAGES = 4096  # images (a seeded subset of the training set) used for the normalisation statistics
STAT_CHUNK = 1024  # images per step of the statistics pass
VAL_DIRS = ("val", "validation", "valid")
IMAGE_EXPECTED = "an image file or a folder of images"


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] float -> [B, C, H, W] (bilinear; antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def to_pixels(x: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """[B, c, h, w] float32 in [0, 1] (a new array) -> [B, channels, H, W] float32: resized, clamped to [0, 1],
    then averaged to one channel or a single channel replicated.

    The element-wise work is numpy's, which runs on one thread: torch's parallel element-wise kernels stall for
    milliseconds per call when the cores are busy (training in the same process), numpy's take microseconds."""
    if tuple(x.shape[-2:]) != tuple(size):
        x = resize_batch(torch.from_numpy(x), size).numpy()
    np.clip(x, 0.0, 1.0, out=x)
    if x.shape[1] != channels:
        x = x.mean(1, keepdims=True, dtype=np.float32) if channels == 1 else np.repeat(x, channels, axis=1)
    return x


class Standardised:
    """``mean``/``std`` (``[C, 1, 1]`` float32 arrays, or None) and the batch ``{"images", "labels"}`` they make."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def standardise(self, x: np.ndarray) -> torch.Tensor:
        if self.mean is not None:
            x -= self.mean
            x /= self.std
        return torch.from_numpy(x)


class ImageArray(Standardised, BatchedDataset):
    """Images held in memory as one array ``[N, c, h, w]`` (uint8 for IDX files, as read) with labels ``[N]``,
    served a whole batch at a time: gathered by index, scaled by ``1 / scale`` to [0, 1], resized to ``size``,
    converted to ``channels`` and standardised with ``mean``/``std`` when they are set."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, scale: float, size: tuple[int, int], channels: int
    ) -> None:
        images = np.asarray(images)
        self.images = np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.scale, self.size, self.channels = float(scale), tuple(size), channels

    def __len__(self) -> int:
        return len(self.labels)

    def raw_batch(self, indices: torch.Tensor | np.ndarray) -> np.ndarray:
        """Images ``indices`` in [0, 1], ``[B, C, H, W]`` float32 (not standardised)."""
        idx = np.asarray(indices, dtype=np.int64)
        return to_pixels(self.images[idx].astype(np.float32) / np.float32(self.scale), self.size, self.channels)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = indices.numpy()
        return {"images": self.standardise(self.raw_batch(idx)), "labels": torch.from_numpy(self.labels[idx])}


class ImageFiles(Standardised, Dataset):
    """Image files read with Pillow one at a time at ``size``, converted to ``channels`` and standardised with
    ``mean``/``std`` when they are set (picklable for worker processes)."""

    def __init__(self, files: list[Path], labels: list[int], size: tuple[int, int], channels: int) -> None:
        self.files, self.labels, self.size, self.channels = files, labels, tuple(size), channels

    def __len__(self) -> int:
        return len(self.files)

    def raw_batch(self, indices: torch.Tensor | np.ndarray) -> np.ndarray:
        """Images ``indices`` in [0, 1], ``[B, C, H, W]`` float32 (not standardised)."""
        x = np.stack([read_image(self.files[int(i)], self.size, self.channels) for i in indices])
        return to_pixels(x.astype(np.float32) / np.float32(255.0), self.size, self.channels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.standardise(self.raw_batch([i])[0])
        return {"images": x, "labels": torch.tensor(self.labels[i], dtype=torch.long)}


Images = ImageArray | ImageFiles


class ImageDataModule(SplitLoaders, L.LightningDataModule):
    """Image classification data with training, validation and test splits.

    Sources (``path``):

    * ``None``: scikit-learn's embedded digits (1,797 8×8 grayscale images, 10 classes; BSD licence). No test set
      unless ``test_fraction`` holds one out.
    * a folder with MNIST-layout IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``):
      the ``t10k-*`` files are the **test set**, and by default also the validation set (as the MNIST and
      Fashion-MNIST releases have no other).
    * a folder with one subfolder of images per class, or with ``train/`` (class subfolders) and optionally
      ``val/`` (or ``validation/``, ``valid/``) and ``test/`` beside it.

    Without a validation set, or with ``val_from_train=True`` (validation apart from the test set: for IDX files;
    a ``val/`` folder is then ignored), a seeded ``val_fraction`` of the training images is held out for
    validation; ``test_fraction`` > 0
    holds out a seeded test set too, for sources without one. ``test_path`` (an IDX folder, whose t10k pair or
    else train pair is read, or a folder of class subfolders) overrides the source's test set. Images are resized
    to ``image_size`` = (H, W) and converted to ``channels`` (1 = grayscale, 3 = RGB). Classes: ``num_classes``
    and ``class_names`` (IDX: ids ``0..max``); a test label outside the classes raises a ValueError naming the
    file and index. ``predict_path`` (an image file or a folder of images, recursive): the images that
    ``perceiverio predict`` classifies, read like the training images (size, channels, standardisation).
    """

    def __init__(
        self,
        path: str | None = None,
        image_size: tuple[int, int] = (32, 32),
        channels: int = 3,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        test_path: str | None = None,
        test_fraction: float = 0.0,
        val_from_train: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        check_paths(path=path, test_path=test_path)
        image_size = check_image_size(image_size)
        if not isinstance(channels, (int, np.integer)) or isinstance(channels, bool) or channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        check_count(batch_size=batch_size)
        check_count(0, num_workers=num_workers)
        check_fraction("val_fraction", val_fraction)
        if test_fraction != 0.0:
            check_fraction("test_fraction", test_fraction)
        for name, p in (("path", path), ("test_path", test_path)):
            if p is not None and not Path(p).expanduser().is_dir():
                raise ValueError(
                    f"image {name} {p!r} is not a folder; expected IDX files (train-images-idx3-ubyte"
                    "[.gz], ...) or one subfolder of images per class"
                )
        predict_path = check_predict_path(predict_path, IMAGE_EXPECTED)
        self.save_hyperparameters()
        self.predict_path = predict_path
        self.path, self.image_size, self.channels = path, image_size, channels
        self.batch_size, self.val_fraction, self.normalize = batch_size, val_fraction, normalize
        self.num_workers, self.seed = num_workers, seed
        self.test_path, self.test_fraction, self.val_from_train = test_path, test_fraction, val_from_train
        self.train_set: Images | None = None
        self.val_set: Images | None = None
        self.test_set: Images | None = None
        self.class_names: list[str] = []
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None

    @property
    def source(self) -> str:
        """The data's origin, as error messages name it."""
        return repr(self.path) if self.path is not None else "the embedded digits"

    def _split(self, n: int, val: bool, test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Seeded ``(train, val, test)`` index arrays (sorted) of ``n`` training images: ``val_fraction`` held out
        for validation when ``val``, ``test_fraction`` for testing when ``test`` (empty arrays otherwise)."""
        if n == 0:
            raise ValueError(f"image source {self.source} has no training images")
        order = np.random.default_rng(self.seed).permutation(n)
        n_val = min(n - 1, max(1, int(round(n * self.val_fraction)))) if val else 0
        n_test = max(1, int(round(n * self.test_fraction))) if test else 0
        if n - n_val - n_test < 1:
            held = [f"{n_val} for validation (val_fraction={self.val_fraction})"] if val else []
            held += [f"{n_test} for testing (test_fraction={self.test_fraction})"] if test else []
            raise ValueError(
                f"image source {self.source} has {n} training image(s); too few to hold out {' and '.join(held)} "
                "and keep one for training"
            )
        return np.sort(order[n_val + n_test :]), np.sort(order[:n_val]), np.sort(order[n_val : n_val + n_test])

    def _holdout(self, has_val: bool, has_test: bool) -> tuple[bool, bool]:
        """Which splits to hold out of the training images, given which the source has."""
        if self.test_fraction > 0 and (has_test or self.test_path is not None):
            where = "test_path" if self.test_path is not None else f"the test set of {self.source}"
            raise ValueError(f"test_fraction={self.test_fraction} but {where} is the test set already; set one")
        return not has_val, self.test_fraction > 0

    def _datasets(self) -> tuple[Images, Images, Images | None]:
        size, c = self.image_size, self.channels
        if self.path is None:
            x, y = load_digits()
            tr, va, te = self._split(len(x), *self._holdout(False, False))
            self.class_names = [str(i) for i in range(10)]
            test = ImageArray(x[te], y[te], 16.0, size, c) if len(te) else None
            return ImageArray(x[tr], y[tr], 16.0, size, c), ImageArray(x[va], y[va], 16.0, size, c), test
        root = Path(self.path).expanduser()
        files = find_idx_files(root)
        if ("train", "images") in files:
            data = read_idx_dataset(root)
            if "train" not in data:
                raise ValueError(f"IDX folder {str(root)!r} has train images but no train-labels-idx1-ubyte[.gz]")
            x, y = data["train"]
            has_test = "test" in data
            # labels checked before a class list is built: against the model's classes when a trainer runs this
            expected = model_classes(self)
            origin = f"the model predicts {expected} classes: num_classes={expected}" if expected else ""
            label_files = [("train", y), *([("test", data["test"][1])] if has_test else [])]
            check_class_ids([(a, f"IDX labels {str(files[s, 'labels'])!r}") for s, a in label_files], expected, origin)
            tr, va, te = self._split(len(x), *self._holdout(has_test and not self.val_from_train, has_test))
            if has_test:
                xt, yt = data["test"]
                xv, yv = (x[va], y[va]) if self.val_from_train else (xt, yt)
            else:
                xv, yv = x[va], y[va]
                xt, yt = (x[te], y[te]) if len(te) else (None, None)
            x, y = x[tr], y[tr]
            k = expected if expected is not None else int(max(y.max(), yv.max())) + 1
            self.class_names = [str(i) for i in range(k)]
            if has_test:
                check_labels(yt, k, f"IDX labels {str(files['test', 'labels'])!r}", unit="index", first=0)
            test = ImageArray(xt, yt, 255.0, size, c) if xt is not None else None
            return ImageArray(x, y, 255.0, size, c), ImageArray(xv, yv, 255.0, size, c), test
        val_dir = next((root / d for d in VAL_DIRS if (root / d).is_dir()), None)
        test_dir = root / "test" if (root / "test").is_dir() else None
        train_dir = root / "train" if (root / "train").is_dir() else None
        if train_dir is None:
            val_dir = test_dir = None  # class subfolders directly under root
        all_files, all_labels, names = list_image_folder(train_dir or root)
        if self.val_from_train:
            val_dir = None
        tr, va, te = self._split(len(all_files), *self._holdout(val_dir is not None, test_dir is not None))
        self.class_names = names

        def part(idx: np.ndarray) -> ImageFiles:
            return ImageFiles([all_files[i] for i in idx], [all_labels[i] for i in idx], size, c)

        val = part(va) if val_dir is None else self._folder(val_dir, "validation")
        test = self._folder(test_dir, "test") if test_dir is not None else (part(te) if len(te) else None)
        return part(tr), val, test

    def _folder(self, folder: Path, what: str) -> ImageFiles:
        files, labels, _ = list_image_folder(folder, classes=self.class_names)
        if not files:
            raise ValueError(f"{what} folder {str(folder)!r} has no images in the class subfolders {self.class_names}")
        return ImageFiles(files, labels, self.image_size, self.channels)

    def _test_path_set(self) -> Images:
        """The test set of ``test_path``: its t10k IDX pair (else its train pair), or its class subfolders."""
        root = Path(self.test_path).expanduser()
        files = find_idx_files(root)
        if files:
            data = read_idx_dataset(root)
            split = "test" if "test" in data else "train"
            x, y = data[split]
            check_labels(y, len(self.class_names), f"IDX labels {str(files[split, 'labels'])!r}", "index", 0)
            return ImageArray(x, y, 255.0, self.image_size, self.channels)
        return self._folder(root, "test_path")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val, test = self._datasets()
        if self.test_path is not None:
            test = self._test_path_set()
        if self.normalize:
            mean, std = self._statistics(train)
            for ds in (train, val, test):
                if ds is not None:
                    ds.mean = mean.astype(np.float32)[:, None, None]
                    ds.std = np.maximum(std.astype(np.float32), np.float32(1e-6))[:, None, None]
            self.mean, self.std = tuple(mean.tolist()), tuple(std.tolist())
        self.train_set, self.val_set, self.test_set = train, val, test

    def _statistics(self, train: Images) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation (float64) of at most ``MAX_STAT_IMAGES`` training images."""
        n = len(train)
        idx = (
            np.arange(n)
            if n <= MAX_STAT_IMAGES
            else np.sort(np.random.default_rng([self.seed, 2]).choice(n, MAX_STAT_IMAGES, replace=False))
        )
        s = np.zeros(self.channels, dtype=np.float64)
        s2 = np.zeros(self.channels, dtype=np.float64)
        show = len(idx) >= 1000 and self.path is not None and isinstance(train, ImageFiles)
        with tqdm(total=len(idx), desc="image statistics", unit="img", disable=not show) as bar:
            for start in range(0, len(idx), STAT_CHUNK):
                chunk = idx[start : start + STAT_CHUNK]
                x = train.raw_batch(chunk).astype(np.float64)
                s += x.mean((2, 3)).sum(0)
                s2 += (x * x).mean((2, 3)).sum(0)
                bar.update(len(chunk))
        mean = s / len(idx)
        return mean, np.sqrt(np.maximum(s2 / len(idx) - mean * mean, 1e-12))

    def test_dataloader(self) -> DataLoader:
        """Test batches in order: ``test_path``, the source's test set (IDX t10k files, a ``test/`` folder) or the
        ``test_fraction`` held out; a ValueError when there is none."""
        self.setup()
        if self.test_set is None:
            raise ValueError(
                f"image source {self.source} has no test set: give test_path (an IDX folder or a folder of class "
                "subfolders), put a test/ folder beside train/, or hold one out with test_fraction"
            )
        return loader(self.test_set, self.batch_size, self.num_workers)

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)

    def predict_dataloader(self) -> DataLoader:
        """The images of ``predict_path`` in name order, prepared like the training images (the training set's
        standardisation); a ValueError when it is not set."""
        if self.predict_path is None:
            raise missing_predict_path("ImageDataModule", IMAGE_EXPECTED)
        files = predict_files(self.predict_path, IMAGE_EXTENSIONS, "an image file")
        self.setup()
        images = ImageFiles(files, [0] * len(files), self.image_size, self.channels)
        if self.normalize:
            images.mean, images.std = self.train_set.mean, self.train_set.std
        names = [relative_name(f, self.predict_path) for f in files]
        return loader(Indexed(images, names), self.batch_size, self.num_workers)
