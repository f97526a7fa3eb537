"""In-memory image arrays are served a whole batch at a time, with the same batches as the per-item path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from perceiverio.data import ImageDataModule
from perceiverio.data.image import ImageArray
from perceiverio.data.readers.image import read_idx, write_idx
from perceiverio.data.sampling import EpochSampler, collated, permutation


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, classes: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.permutation(np.arange(n) % classes).astype(np.uint8))


class PerItem(Dataset):
    """The per-item reference: one image at a time (uint8 -> float / 255, resize, clamp, channels, standardise),
    stacked by the default collate function."""

    def __init__(self, images, labels, size, channels, mean=None, std=None) -> None:
        self.images, self.labels, self.size, self.channels = images, labels, size, channels
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        x = torch.from_numpy(np.asarray(self.images[i], dtype=np.float32) / 255.0)[None]
        if tuple(x.shape[-2:]) != self.size:
            shrink = x.shape[-2] > self.size[0]
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=shrink)[0]
        x = x.clamp(0, 1)
        x = x.expand(self.channels, -1, -1) if self.channels != 1 else x
        if self.mean is not None:
            x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return {"images": x, "labels": torch.tensor(int(self.labels[i]))}


def assert_same_batches(fast: DataLoader, reference: DataLoader, atol: float = 0.0) -> int:
    n = 0
    for a, b in zip(fast, reference, strict=True):
        assert torch.equal(a["labels"], b["labels"]) and a["labels"].dtype == torch.long
        assert a["images"].shape == b["images"].shape and a["images"].dtype == torch.float32
        torch.testing.assert_close(a["images"], b["images"], atol=atol, rtol=0)
        n += 1
    return n


@pytest.mark.parametrize(
    "size,channels,normalize", [((28, 28), 1, True), ((28, 28), 1, False), ((32, 32), 3, True), ((14, 14), 1, False)]
)
def test_batched_idx_loader_matches_the_per_item_path(tmp_path, size, channels, normalize):
    write_mnist(tmp_path / "m")
    dm = ImageDataModule(
        path=str(tmp_path / "m"), image_size=size, channels=channels, batch_size=8, normalize=normalize, seed=3
    )
    dm.setup()
    x = read_idx(tmp_path / "m" / "train-images-idx3-ubyte.gz")
    y = read_idx(tmp_path / "m" / "train-labels-idx1-ubyte.gz")
    ref = PerItem(x, y, size, channels, dm.mean, dm.std)
    train = dm.train_dataloader()
    assert isinstance(dm.train_set, ImageArray) and train.collate_fn is collated
    assert dm.train_set.images.dtype == np.uint8 and dm.train_set.images.shape == (30, 1, 28, 28)
    reference = DataLoader(ref, batch_size=8, sampler=EpochSampler(permutation, len(ref), 3))  # epochs 0, 1, ...
    exact = 0.0 if size == (28, 28) else 1e-6
    for _ in range(2):  # two epochs: the same seeded order, epoch after epoch
        assert assert_same_batches(train, reference, exact) == 4
    xt = read_idx(tmp_path / "m" / "t10k-images-idx3-ubyte.gz")
    yt = read_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte.gz")
    test_ref = DataLoader(PerItem(xt, yt, size, channels, dm.mean, dm.std), batch_size=8)
    assert assert_same_batches(dm.test_dataloader(), test_ref, exact) == 2
    item = dm.train_set[5]  # one item = that row of a batch
    torch.testing.assert_close(item["images"], ref[5]["images"], atol=exact, rtol=0)
    assert int(item["labels"]) == int(y[5])


def test_batched_loader_with_workers_gives_the_same_batches(tmp_path):
    write_mnist(tmp_path / "m", n_train=40)
    make = lambda w: ImageDataModule(  # noqa: E731
        path=str(tmp_path / "m"), image_size=(28, 28), channels=1, batch_size=16, num_workers=w
    )
    a, b = list(make(0).train_dataloader()), list(make(2).train_dataloader())
    assert [len(x["labels"]) for x in a] == [16, 16, 8]
    for x, z in zip(a, b, strict=True):
        assert torch.equal(x["images"], z["images"]) and torch.equal(x["labels"], z["labels"])


def test_normalisation_statistics_of_the_training_images(tmp_path):
    write_mnist(tmp_path / "m")
    dm = ImageDataModule(path=str(tmp_path / "m"), image_size=(28, 28), channels=1)
    dm.setup()
    x = read_idx(tmp_path / "m" / "train-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    assert dm.mean[0] == pytest.approx(x.mean(), abs=1e-6)
    assert dm.std[0] == pytest.approx(x.std(), abs=1e-6)


def test_fashion_mnist_batches_match_the_per_item_path():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not folder.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    dm = ImageDataModule(path=str(folder), image_size=(28, 28), channels=1, batch_size=128)
    dm.setup()
    x, y = read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "train-labels-idx1-ubyte.gz")
    ref = DataLoader(
        PerItem(x, y, (28, 28), 1, dm.mean, dm.std), batch_size=128, sampler=EpochSampler(permutation, len(x), 0)
    )
    for k, (a, b) in enumerate(zip(dm.train_dataloader(), ref)):
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["images"], b["images"])
        if k == 3:
            break
