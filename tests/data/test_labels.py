"""Labels are checked in setup, before anything is allocated per class, against the model's (or the declared)
classes; a bad label is named with its file, its line as an editor shows it, and its value."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest
from helpers import cpu_trainer

from perceiverio.data import ImageDataModule, TextClassificationDataModule
from perceiverio.data.labels import LabelEncoder, Labels, table_position
from perceiverio.data.readers.image import write_idx
from perceiverio.tasks import SequenceClassifierConfig
from perceiverio.training import ImageClassificationTask, OptimizerConfig, SequenceClassificationTask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tsv(folder, labels, name="train.tsv", blank_after=None):
    lines = ["sentence\tlabel"] + [f"text {i}\t{y}" for i, y in enumerate(labels)]
    if blank_after is not None:
        lines.insert(blank_after, "")
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def setup_error(**kwargs) -> str:
    with pytest.raises(ValueError) as e:
        TextClassificationDataModule(**kwargs).setup()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_a_huge_label_id_is_refused_quickly_without_memory(tmp_path):
    path = tsv(tmp_path, [0, 1, 99999999999, 1])
    tracemalloc.start()
    start = time.perf_counter()
    msg = setup_error(path=str(path))
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (
        f"{path} line 4 (row 3): label '99999999999' is not a class id in [0, 100000)" in msg and "classes=K" in msg
    ), msg
    assert seconds < 2 and peak < 20e6, (seconds, peak)  # was a list of 10^11 class names
    assert "is not a class id in [0, 2) (data classes=2)" in setup_error(path=str(path), classes=2)


def test_a_word_among_integer_labels_is_refused_with_its_line(tmp_path):
    path = tsv(tmp_path, [0, 1, 1, "N/A", 0], blank_after=3)  # a blank line: the editor's line numbers move on
    msg = setup_error(path=str(path))
    assert (
        f"{path} line 6 (row 4): label 'N/A' is not a class id; expected an integer class id like the other labels"
        in msg
    )


def test_labels_are_checked_against_the_model_before_a_step(tmp_path):
    tsv(tmp_path, [0, 1, 0, 7, 1, 0])
    tsv(tmp_path, [0, 1], name="val.tsv")
    config = SequenceClassifierConfig.tiny(max_seq_len=32, num_classes=2)
    module = SequenceClassificationTask(config, optimizer=OptimizerConfig(schedule="constant"))
    data = TextClassificationDataModule(path=str(tmp_path), max_length=32, batch_size=2)
    with pytest.raises(ValueError) as e:
        cpu_trainer(max_steps=1).fit(module, datamodule=data)
    assert str(e.value) == (
        f"{tmp_path / 'train.tsv'} line 5 (row 4): label '7' is not a class id in [0, 2) (the model predicts 2 "
        "classes: num_classes=2)"
    )
    data = TextClassificationDataModule(path=str(tmp_path), max_length=32, batch_size=2)
    data.setup()  # alone: the labels imply 8 classes; with the model, setup checks them again
    assert data.num_classes == 8
    with pytest.raises(ValueError, match="label '7' is not a class id in"):
        cpu_trainer(max_steps=1).fit(module, datamodule=data)


def test_string_labels_beyond_the_classes_name_the_rarest(tmp_path):
    path = tsv(tmp_path, ["pos", "neg", "pos", "neg", "maybe", "pos"])
    msg = setup_error(path=str(path), classes=2)
    assert msg.startswith(
        f"{path} line 6 (row 5): label 'maybe' is not one of 2 classes (data classes=2): the data has 3"
    )
    assert "'pos' ×3" in msg


def test_declared_class_names_fix_the_ids(tmp_path):
    path = tsv(tmp_path, ["pos", "neg", 1, "neg"])
    data = TextClassificationDataModule(path=str(path), classes=["pos", "neg"])
    data.setup()
    assert data.num_classes == 2 and data.label_names == ["pos", "neg"]
    batches = [*data.train_dataloader(), *data.val_dataloader()]
    assert sorted(int(y) for b in batches for y in b["labels"]) == [0, 1, 1, 1]
    msg = setup_error(path=str(tsv(tmp_path, ["pos", "meh"], name="b.tsv")), classes=["pos", "neg"])
    assert "b.tsv line 3 (row 2): label 'meh' is not one of the classes ['pos', 'neg'] or a class id in [0, 2)" in msg
    for bad in (0, 1, True, 10**12, [], ["a"], ["a", "a"], [1, 2], "two"):
        with pytest.raises(ValueError, match=r"^classes must be a number of classes in \[2, 100000\] or a list"):
            TextClassificationDataModule(path=str(path), classes=bad)


def test_test_labels_outside_the_classes_are_named(tmp_path):
    tsv(tmp_path, [0, 1, 1, 0])
    tsv(tmp_path, [0, 1], name="val.tsv")
    test = tsv(tmp_path, [1, 0, 2], name="glue_dev.tsv")
    msg = setup_error(path=str(tmp_path), test_path="glue_dev")
    assert msg == f"{test} line 4 (row 3): label '2' is not a class id in [0, 2)", msg


def test_positions_follow_the_editor(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"two\nlines",0\n\nb,1\n')
    assert [table_position(tmp_path / "a.csv", i) for i in (0, 1)] == ["line 2", "line 5"]
    (tmp_path / "a.jsonl").write_text('{"label": 0}\n\n{"label": 1}\n')
    assert table_position(tmp_path / "a.jsonl", 1) == "line 3"
    (tmp_path / "a.json").write_text(json.dumps([{"label": 0}, {"label": 1}]))
    assert table_position(tmp_path / "a.json", 1) == "item 2"
    split = Labels([0, 1, -1], "dataset 'x' split 'test'")
    with pytest.raises(ValueError, match=r"^dataset 'x' split 'test' row 3: label -1 is not a class id in \[0, 2\)$"):
        LabelEncoder([Labels([0, 1], "train")]).encode(split)


def _idx_folder(folder, train_labels, test_labels):
    rng = np.random.default_rng(0)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        labels = np.asarray(labels, dtype=np.int32)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def test_idx_labels_are_checked_before_the_class_list(tmp_path):
    _idx_folder(tmp_path, [0, 1, 2, 2_000_000_000, 1, 0], [0, 1])
    start = time.perf_counter()
    with pytest.raises(ValueError) as e:
        ImageDataModule(path=str(tmp_path), image_size=(8, 8), channels=1).setup()
    assert time.perf_counter() - start < 2
    assert str(e.value).startswith(
        f"IDX labels {str(tmp_path / 'train-labels-idx1-ubyte')!r} index 3: label 2000000000 is not a class id in "
        "[0, 100000)"
    )


def test_idx_labels_are_checked_against_the_model(tmp_path):
    _idx_folder(tmp_path, [0, 1, 2, 1, 0, 1, 2, 0], [0, 1, 5])
    module = ImageClassificationTask(num_classes=3, optimizer=OptimizerConfig(schedule="constant"))
    data = ImageDataModule(path=str(tmp_path), image_size=(8, 8), channels=1, batch_size=2)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte' index 2: label 5 is not a class id in \[0, 3\) "):
        cpu_trainer(max_steps=1).fit(module, datamodule=data)
