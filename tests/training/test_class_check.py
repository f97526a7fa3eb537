"""The model's num_classes is checked against the data module's classes before a step runs; kornia is needed only
for the augmentations that use it."""

from __future__ import annotations

import sys

import lightning as L
import numpy as np
import pytest
import torch
from helpers import cpu_trainer

from perceiverio.data import ImageDataModule, TextClassificationDataModule
from perceiverio.tasks import SequenceClassifierConfig
from perceiverio.training import ImageClassificationTask, OptimizerConfig, SequenceClassificationTask
from perceiverio.training.augment import ImageAugmentation

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FAST = OptimizerConfig(lr=1e-3, schedule="constant")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trainer(**kwargs) -> L.Trainer:
    return cpu_trainer(**{"max_steps": 1, **kwargs})


def count_steps(module: L.LightningModule) -> list[int]:
    """Wraps the module's training/validation/test steps to record every call."""
    calls: list[int] = []
    for name in ("training_step", "validation_step", "test_step"):
        step = getattr(module, name)

        def wrapped(*args, _step=step, **kwargs):
            calls.append(1)
            return _step(*args, **kwargs)

        setattr(module, name, wrapped)
    return calls


def test_image_num_classes_mismatch_fails_before_any_step():
    module = ImageClassificationTask(num_classes=3, optimizer=FAST)
    calls = count_steps(module)
    data = ImageDataModule(batch_size=8)  # the embedded digits: 10 classes
    with pytest.raises(ValueError) as e:
        trainer().fit(module, datamodule=data)
    msg = str(e.value)
    assert "num_classes=3" in msg and "has 10" in msg and "ImageDataModule" in msg and "digits" in msg, msg
    assert calls == []
    with pytest.raises(ValueError, match="num_classes=3"):
        trainer().test(module, datamodule=data)
    assert calls == []


def test_matching_num_classes_trains_and_tests_on_the_held_out_digits():
    module = ImageClassificationTask(num_classes=10, optimizer=FAST)
    data = ImageDataModule(batch_size=8, test_fraction=0.02)
    calls = count_steps(module)
    trainer().fit(module, datamodule=data)
    assert len(calls) == 1
    results = trainer(limit_test_batches=2).test(module, datamodule=data, verbose=False)
    assert set(results[0]) == {"test/loss", "test/acc"} and 0.0 <= results[0]["test/acc"] <= 1.0


def test_text_num_classes_mismatch_names_the_data_path(tmp_path):
    rows = [(f"text {i}", ["neg", "pos", "mixed"][i % 3]) for i in range(12)]
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    config = SequenceClassifierConfig.tiny(max_seq_len=32, num_classes=2)
    module = SequenceClassificationTask(config, optimizer=FAST)
    calls = count_steps(module)
    data = TextClassificationDataModule(path=str(tmp_path), max_length=32, batch_size=4)
    with pytest.raises(ValueError) as e:
        trainer().fit(module, datamodule=data)
    assert "num_classes=2" in str(e.value) and "has 3" in str(e.value) and str(tmp_path) in str(e.value)
    assert calls == []


def test_regressors_and_plain_dataloaders_are_not_checked():
    module = ImageClassificationTask(num_classes=3, optimizer=FAST)
    module.check_classes(None)  # no data module (dataloaders passed directly): nothing to compare
    images = torch.rand(4, 3, 32, 32)
    batches = [{"images": images, "labels": torch.tensor([0, 1, 2, 0])}]
    trainer().fit(module, torch.utils.data.DataLoader(batches, batch_size=None))
    regressor = SequenceClassificationTask(SequenceClassifierConfig.tiny(max_seq_len=32, num_classes=1))
    assert regressor.model_num_classes() is None


@pytest.mark.parametrize(
    "options,named",
    [
        ({"randaugment": True}, "randaugment=True"),
        ({"mixup_alpha": 0.2}, "mixup_alpha=0.2"),
        ({"cutmix_alpha": 1.0}, "cutmix_alpha=1.0"),
    ],
)
def test_missing_kornia_names_the_option_and_the_extra(monkeypatch, options, named):
    for name in [m for m in sys.modules if m == "kornia" or m.startswith("kornia.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kornia", None)  # "import kornia" now fails as if it were not installed
    with pytest.raises(ValueError) as e:
        ImageAugmentation(10, **options)
    assert named in str(e.value) and "pip install 'perceiverio[vision]'" in str(e.value)
    plain = ImageAugmentation(10)  # nothing that needs kornia: no import
    x, y = plain(torch.rand(2, 1, 4, 4), torch.tensor([1, 2]))
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [1, 2]
    assert np.isfinite(x.numpy()).all()


def test_multimodal_label_size_is_checked_against_the_video_data():
    pytest.importorskip("av")
    from perceiverio.data import VideoDataModule
    from perceiverio.training import MultimodalAutoencodingTask

    module = MultimodalAutoencodingTask(optimizer=FAST)  # the tiny preset: a 5-class label modality
    assert module.model_num_classes() == 5
    calls = count_steps(module)
    with pytest.raises(ValueError, match=r"num_classes=5\).*has 10"):
        trainer().fit(module, datamodule=VideoDataModule(num_classes=10))
    assert calls == []
