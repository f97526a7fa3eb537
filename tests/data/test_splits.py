"""Test splits of the image and text classification data, and the label checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error

from perceiverio.data import ImageDataModule, TextClassificationDataModule
from perceiverio.data.readers.image import write_idx
from perceiverio.tokenizer import ByteTokenizer

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write_idx_pair(folder: Path, prefix: str, labels: list[int], seed: int = 0) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels, dtype=np.uint8))
    return images


def labels_of(loader) -> list[int]:
    return [int(y) for b in loader for y in b["labels"]]


def images_of(loader) -> torch.Tensor:
    return torch.cat([b["images"] for b in loader])


# ---------------------------------------------------------------------------------------------------------- images
def test_idx_t10k_files_are_the_test_set_and_by_default_the_validation_set(tmp_path):
    train_y, test_y = [i % 10 for i in range(30)], [9 - i % 10 for i in range(12)]
    write_idx_pair(tmp_path / "m", "train", train_y)
    t10k = write_idx_pair(tmp_path / "m", "t10k", test_y, seed=1)
    dm = ImageDataModule(path=str(tmp_path / "m"), image_size=(28, 28), channels=1, batch_size=5, normalize=False)
    assert labels_of(dm.test_dataloader()) == test_y and labels_of(dm.val_dataloader()) == test_y
    assert torch.equal(images_of(dm.test_dataloader())[:, 0], torch.from_numpy(t10k).float() / 255.0)
    assert len(dm.train_set) == 30 and dm.num_classes == 10
    apart = ImageDataModule(
        path=str(tmp_path / "m"), image_size=(28, 28), channels=1, batch_size=5, val_from_train=True
    )
    apart.setup()
    assert len(apart.train_set) == 27 and len(apart.val_set) == 3  # a seeded 10% of the training images
    assert labels_of(apart.test_dataloader()) == test_y
    train_and_val = sorted(labels_of(apart.train_dataloader()) + labels_of(apart.val_dataloader()))
    assert train_and_val == sorted(train_y)  # validation came out of the training images, not t10k


def test_idx_test_labels_outside_the_classes_name_the_file_and_index(tmp_path):
    write_idx_pair(tmp_path / "m", "train", [i % 3 for i in range(12)])
    write_idx_pair(tmp_path / "m", "t10k", [0, 1, 2, 7, 1])
    dm = ImageDataModule(path=str(tmp_path / "m"), image_size=(28, 28), channels=1, val_from_train=True)
    one_line_error(dm.setup, "t10k-labels-idx1-ubyte.gz", "index 3", "label 7", "[0, 3)")
    write_idx_pair(tmp_path / "other", "t10k", [0, 9, 1])
    dm = ImageDataModule(path=str(tmp_path / "m"), image_size=(28, 28), channels=1, test_path=str(tmp_path / "other"))
    one_line_error(dm.setup, "other", "index 1", "label 9", "[0, 8)")  # classes 0..7 (train + t10k validation)
    (tmp_path / "neg").mkdir()
    write_idx(tmp_path / "neg" / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    write_idx(tmp_path / "neg" / "train-labels-idx1-ubyte", np.array([0, -2], np.int8))
    one_line_error(lambda: ImageDataModule(path=str(tmp_path / "neg")).setup(), "train-labels", "index 1", "-2")


def test_idx_test_path_overrides_the_t10k_files(tmp_path):
    write_idx_pair(tmp_path / "m", "train", [i % 4 for i in range(20)])
    write_idx_pair(tmp_path / "m", "t10k", [0, 1, 2, 3])
    other = write_idx_pair(tmp_path / "other", "train", [3, 2, 1], seed=5)  # only a train pair: it is read
    dm = ImageDataModule(
        path=str(tmp_path / "m"), image_size=(28, 28), channels=1, normalize=False, test_path=str(tmp_path / "other")
    )
    assert labels_of(dm.test_dataloader()) == [3, 2, 1] and labels_of(dm.val_dataloader()) == [0, 1, 2, 3]
    assert torch.equal(images_of(dm.test_dataloader())[:, 0], torch.from_numpy(other).float() / 255.0)
    one_line_error(lambda: ImageDataModule(test_path=str(tmp_path / "nothing")), "test_path", "nothing", "not a folder")


def write_image_folder(root: Path, split_sizes: dict[str, int], classes=("cat", "dog")) -> None:
    from PIL import Image

    for split, n in split_sizes.items():
        for k, cls in enumerate(classes):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((6, 6, 3), 40 * k + i, np.uint8)).save(d / f"{i}.png")


def test_image_folder_test_subfolder_and_test_path(tmp_path):
    write_image_folder(tmp_path / "pets", {"train": 5, "val": 2, "test": 3})
    dm = ImageDataModule(path=str(tmp_path / "pets"), image_size=(6, 6), batch_size=4)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 4, 6) and dm.class_names == ["cat", "dog"]
    assert labels_of(dm.test_dataloader()) == [0, 0, 0, 1, 1, 1]
    write_image_folder(tmp_path / "nosplit", {"train": 5, "test": 1})  # no val/: validation held out of train/
    dm = ImageDataModule(path=str(tmp_path / "nosplit"), image_size=(6, 6), val_fraction=0.2)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 2) and dm.num_classes == 2
    write_image_folder(tmp_path / "extra", {"": 2}, classes=("dog",))
    dm = ImageDataModule(path=str(tmp_path / "pets"), image_size=(6, 6), test_path=str(tmp_path / "extra"))
    assert labels_of(dm.test_dataloader()) == [1, 1]  # class ids of the training folder's names
    write_image_folder(tmp_path / "alien", {"": 1}, classes=("cow",))
    one_line_error(
        lambda: ImageDataModule(path=str(tmp_path / "pets"), test_path=str(tmp_path / "alien")).setup(), "cow"
    )


def test_digits_have_a_test_set_only_when_held_out(tmp_path):
    plain = ImageDataModule(image_size=(8, 8), channels=1, normalize=False)
    one_line_error(plain.test_dataloader, "no test set", "test_path", "test_fraction")
    held = ImageDataModule(image_size=(8, 8), channels=1, normalize=False, test_fraction=0.1)
    held.setup()
    assert (len(held.train_set), len(held.val_set), len(held.test_set)) == (1437, 180, 180)
    assert torch.equal(images_of(held.val_dataloader()), images_of(plain.val_dataloader()))  # validation unchanged
    train = {tuple(x.flatten().tolist()) for x in images_of(held.train_dataloader())}
    test = images_of(held.test_dataloader())
    assert sum(tuple(x.flatten().tolist()) in train for x in test) < 10  # (the digits repeat a few images)
    write_idx_pair(tmp_path / "m", "train", [0, 1] * 5)
    write_idx_pair(tmp_path / "m", "t10k", [0, 1])
    one_line_error(
        lambda: ImageDataModule(path=str(tmp_path / "m"), test_fraction=0.1).setup(), "test_fraction", "test set"
    )


# ------------------------------------------------------------------------------------------------------------ text
def write_tsv(path: Path, rows: list[tuple[str, object]]) -> None:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))


def test_text_classification_test_path_file_or_split_name(tmp_path):
    write_tsv(tmp_path / "train.tsv", [(f"train {i}", i % 2) for i in range(20)])
    write_tsv(tmp_path / "val.tsv", [("val a", 0), ("val b", 1)])
    dev = [("dev one", 1), ("dev two", 0), ("dev three", 1)]
    write_tsv(tmp_path / "glue_dev.tsv", dev)
    dm = TextClassificationDataModule(path=str(tmp_path), val_split="val", test_path="glue_dev", batch_size=2)
    tok = ByteTokenizer()
    texts = [
        tok.decode(ids[m.bool()]) for b in dm.test_dataloader() for ids, m in zip(b["input_ids"], b["attention_mask"])
    ]
    assert texts == [t for t, _ in dev] and labels_of(dm.test_dataloader()) == [1, 0, 1]
    assert labels_of(dm.val_dataloader()) == [0, 1]
    (tmp_path / "elsewhere.jsonl").write_text("\n".join(json.dumps({"sentence": t, "label": y}) for t, y in dev))
    by_file = TextClassificationDataModule(path=str(tmp_path), test_path=str(tmp_path / "elsewhere.jsonl"))
    assert labels_of(by_file.test_dataloader()) == [1, 0, 1]
    one_line_error(
        lambda: TextClassificationDataModule(path=str(tmp_path), test_path="nope"), "test_path 'nope'", "nope.tsv"
    )
    one_line_error(TextClassificationDataModule(path=str(tmp_path)).test_dataloader, "no test set", "test_path")


def test_text_labels_outside_the_classes_name_the_file_and_row(tmp_path):
    write_tsv(tmp_path / "train.tsv", [("a", 0), ("b", 1), ("c", 0)])
    write_tsv(tmp_path / "val.tsv", [("d", 1)])
    write_tsv(tmp_path / "test.tsv", [("e", 0), ("f", 1), ("g", 2)])
    dm = TextClassificationDataModule(path=str(tmp_path), val_split="val", test_path="test")
    one_line_error(dm.setup, "test.tsv", "row 3", "label '2'", "[0, 2)")
    write_tsv(tmp_path / "glue_test.tsv", [("e", -1)])  # GLUE's unlabelled test files hold -1
    dm = TextClassificationDataModule(path=str(tmp_path), val_split="val", test_path="glue_test")
    one_line_error(dm.setup, "glue_test.tsv", "row 1", "'-1'")
    (tmp_path / "bad").mkdir()
    write_tsv(tmp_path / "bad" / "train.tsv", [("a", 0), ("b", -3), ("c", 1)])
    one_line_error(TextClassificationDataModule(path=str(tmp_path / "bad")).setup, "train.tsv", "row 2", "'-3'")
    (tmp_path / "words").mkdir()
    write_tsv(tmp_path / "words" / "train.tsv", [("a", "pos"), ("b", "neg")])
    write_tsv(tmp_path / "words" / "val.tsv", [("c", "neg")])
    write_tsv(tmp_path / "words" / "test.tsv", [("d", "pos"), ("e", "neutral")])
    dm = TextClassificationDataModule(path=str(tmp_path / "words"), val_split="val", test_path="test")
    one_line_error(dm.setup, "words/test.tsv", "row 2", "'neutral'", "['neg', 'pos']")


def test_sst2_glue_dev_test_set():
    folder = SHARED_DATA / "sst2"
    if not (folder / "glue_dev.tsv").is_file():
        pytest.skip(f"{folder}/glue_dev.tsv not found: ../shared is absent (only in the project workspace)")
    dm = TextClassificationDataModule(path=str(folder), val_split="val", test_path="glue_dev", max_length=64)
    labels = labels_of(dm.test_dataloader())
    rows = (folder / "glue_dev.tsv").read_text().splitlines()[1:]
    assert len(labels) == 872 and labels == [int(r.split("\t")[1]) for r in rows] and dm.num_classes == 2


def test_text_classification_module_keeps_its_package_name():
    import perceiverio.data as data
    from perceiverio.data.text_classification import TextClassificationDataModule as direct

    assert data.TextClassificationDataModule is direct


def test_a_batch_larger_than_the_training_set_is_the_whole_set_with_a_warning():
    dm = ImageDataModule(batch_size=10**13)  # was a 19 GB, one-minute step on the embedded text
    dm.setup("fit")
    with pytest.warns(UserWarning, match=r"batch_size 10000000000000 is larger than the \d+ training examples"):
        loader = dm.train_dataloader()
    assert loader.batch_size == len(dm.train_set)
    assert len(next(iter(loader))["labels"]) == len(dm.train_set)
