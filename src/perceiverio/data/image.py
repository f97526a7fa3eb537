"""Image classification data: scikit-learn digits (embedded), IDX files (MNIST/Fashion-MNIST) or image folders.

Batches: ``{"images": [B, C, H, W] float32, "labels": [B] long}``. Pixels are first scaled to [0, 1]; with
``normalize=True`` (default) each channel is then standardised with the mean and standard deviation of the training
images (attributes ``mean``/``std``, tuples of C floats; undo with ``x * std + mean`` before [0, 1]-based
augmentations).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .readers.image import find_idx_files, list_image_folder, load_digits, read_idx_dataset, read_image
from .sampling import SplitLoaders, check_fraction, check_image_size, check_positive

MAX_STAT_IMAGES = 4096  # images (a seeded subset of the training set) used for the normalisation statistics
_VAL_DIRS = ("val", "validation", "valid")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, h, w] float -> [C, H, W] (bilinear; antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)[0]


class _Images(Dataset):
    """``get(i)`` -> ``([c, h, w] float in [0, 1], label)``; resized to ``size``, replicated to ``channels``
    when the source has one, then standardised with ``mean``/``std`` when given."""

    def __init__(
        self, get: Callable[[int], tuple[torch.Tensor, int]], n: int, size: tuple[int, int], channels: int
    ) -> None:
        self.get, self.n, self.size, self.channels = get, n, tuple(size), channels
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.n

    def raw(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.get(i)
        x = _resize(x.float(), self.size).clamp(0.0, 1.0)
        if x.shape[0] != self.channels:
            x = x.mean(0, keepdim=True) if self.channels == 1 else x.expand(self.channels, -1, -1).contiguous()
        return x, y

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.raw(i)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return {"images": x, "labels": torch.tensor(y, dtype=torch.long)}


class _ArrayImages:
    """Image ``i`` of an array ``[N, h, w]`` or ``[N, h, w, c]`` scaled by ``1 / scale`` (picklable)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, scale: float) -> None:
        self.images, self.labels, self.scale = images, labels, scale

    def __call__(self, i: int) -> tuple[torch.Tensor, int]:
        a = torch.from_numpy(np.asarray(self.images[i], dtype=np.float32) / self.scale)
        return (a[None] if a.dim() == 2 else a.permute(2, 0, 1)), int(self.labels[i])


class _FileImages:
    """Image file ``i`` read with Pillow at ``size``, in [0, 1] (picklable)."""

    def __init__(self, files: list[Path], labels: list[int], channels: int, size: tuple[int, int]) -> None:
        self.files, self.labels, self.channels, self.size = files, labels, channels, size

    def __call__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(read_image(self.files[i], self.size, self.channels)).float() / 255.0, self.labels[i]


class ImageDataModule(SplitLoaders, L.LightningDataModule):
    """Image classification data.

    Source: ``path=None``: scikit-learn's embedded digits (1,797 8×8 grayscale images, 10 classes; BSD licence)
    upsampled bilinearly to ``image_size`` and replicated to ``channels``; a folder with MNIST-layout IDX files
    (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``; the ``t10k-*`` files are the validation
    set); or a folder with one subfolder of images per class, optionally under ``train/`` and ``val/``. Without a
    separate validation set a seeded ``val_fraction`` of the training images is held out. Images are resized to
    ``image_size`` = (H, W) and converted to ``channels`` (1 = grayscale, 3 = RGB).
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
    ) -> None:
        super().__init__()
        image_size = check_image_size(image_size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        check_positive(batch_size=batch_size)
        check_fraction("val_fraction", val_fraction)
        if path is not None and not Path(path).expanduser().is_dir():
            raise ValueError(
                f"image path {path!r} is not a folder; expected IDX files (train-images-idx3-ubyte"
                "[.gz], ...) or one subfolder of images per class"
            )
        self.save_hyperparameters()
        self.path, self.image_size, self.channels = path, image_size, channels
        self.batch_size, self.val_fraction, self.normalize = batch_size, val_fraction, normalize
        self.num_workers, self.seed = num_workers, seed
        self.train_set: _Images | None = None
        self.val_set: _Images | None = None
        self.class_names: list[str] = []
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n < 2:
            raise ValueError(f"image source {self.path or 'digits'!r} has {n} image(s); need at least 2 to split")
        order = np.random.default_rng(self.seed).permutation(n)
        n_val = min(n - 1, max(1, int(round(n * self.val_fraction))))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _datasets(self) -> tuple[_Images, _Images]:
        size, c = self.image_size, self.channels
        if self.path is None:
            x, y = load_digits()
            tr, va = self._split(len(x))
            self.class_names = [str(i) for i in range(10)]
            return (
                _Images(_ArrayImages(x[tr], y[tr], 16.0), len(tr), size, c),
                _Images(_ArrayImages(x[va], y[va], 16.0), len(va), size, c),
            )
        root = Path(self.path).expanduser()
        if ("train", "images") in find_idx_files(root):
            data = read_idx_dataset(root)
            x, y = data["train"]
            if "val" in data:
                xv, yv = data["val"]
            else:
                tr, va = self._split(len(x))
                x, y, xv, yv = x[tr], y[tr], x[va], y[va]
            k = int(max(y.max(), yv.max())) + 1
            self.class_names = [str(i) for i in range(k)]
            return (
                _Images(_ArrayImages(x, y, 255.0), len(x), size, c),
                _Images(_ArrayImages(xv, yv, 255.0), len(xv), size, c),
            )
        val_dir = next((root / d for d in _VAL_DIRS if (root / d).is_dir()), None)
        if (root / "train").is_dir() and val_dir is not None:
            files, labels, names = list_image_folder(root / "train")
            vfiles, vlabels, _ = list_image_folder(val_dir, classes=names)
        else:
            all_files, all_labels, names = list_image_folder(root)
            tr, va = self._split(len(all_files))
            files, labels = [all_files[i] for i in tr], [all_labels[i] for i in tr]
            vfiles, vlabels = [all_files[i] for i in va], [all_labels[i] for i in va]
        if not vfiles:
            raise ValueError(f"validation folder {str(val_dir)!r} has no images")
        self.class_names = names
        return (
            _Images(_FileImages(files, labels, c, size), len(files), size, c),
            _Images(_FileImages(vfiles, vlabels, c, size), len(vfiles), size, c),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._datasets()
        if self.normalize:
            n = len(train)
            idx = (
                np.arange(n)
                if n <= MAX_STAT_IMAGES
                else np.sort(np.random.default_rng([self.seed, 2]).choice(n, MAX_STAT_IMAGES, replace=False))
            )
            s = torch.zeros(self.channels, dtype=torch.float64)
            s2 = torch.zeros(self.channels, dtype=torch.float64)
            for i in tqdm(idx, desc="image statistics", unit="img", disable=len(idx) < 1000 or self.path is None):
                x = train.raw(int(i))[0].double()
                s += x.mean((1, 2))
                s2 += (x * x).mean((1, 2))
            mean = s / len(idx)
            std = (s2 / len(idx) - mean * mean).clamp_min(1e-12).sqrt()
            for ds in (train, val):
                ds.mean = mean.float()[:, None, None]
                ds.std = std.float().clamp_min(1e-6)[:, None, None]
            self.mean, self.std = tuple(mean.tolist()), tuple(std.tolist())
        self.train_set, self.val_set = train, val

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)
