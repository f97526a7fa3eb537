"""The flat signature and hyper-parameters of task modules (training/base.py)."""

from __future__ import annotations

import inspect

import pytest

from perceiverio.training import MaskedLanguageModelTask, OptimizerConfig

OPTIONS = ["extra", "decode_labeled_only", "optimizer", "gradient_checkpointing", "compile", "init_from"]


class _MaskedLanguageModelWithExtra(MaskedLanguageModelTask):
    """A task module subclassed once more, with an option of its own."""

    def __init__(self, config=None, *, extra: int = 1, **kwargs) -> None:
        super().__init__(config, extra=extra, **kwargs)
        self.extra = extra


def test_options_are_declared_once_and_inherited_in_order():
    names = list(inspect.signature(_MaskedLanguageModelWithExtra).parameters)
    assert names[-6:] == OPTIONS
    assert "max_seq_len" in names and "config" not in names and "kwargs" not in names
    assert inspect.signature(MaskedLanguageModelTask).parameters["optimizer"].annotation is OptimizerConfig


def test_subclass_options_are_stored_and_restored():
    module = _MaskedLanguageModelWithExtra(extra=5, decode_labeled_only=False, max_seq_len=64)
    assert (module.extra, module.decode_labeled_only, module.model_config.max_seq_len) == (5, False, 64)
    assert list(module.hparams)[-6:] == OPTIONS
    again = _MaskedLanguageModelWithExtra(**module.hparams)
    assert (again.extra, again.decode_labeled_only, again.model_config) == (5, False, module.model_config)


def test_unknown_arguments_are_refused():
    with pytest.raises(TypeError, match=r"unexpected arguments \['nope'\]"):
        MaskedLanguageModelTask(nope=1)


@pytest.mark.parametrize(
    "name",
    [
        "MaskedLanguageModelTask",
        "SequenceClassificationTask",
        "MultitaskClassificationTask",
        "ImageClassificationTask",
        "OpticalFlowTask",
        "MultimodalAutoencodingTask",
    ],
)
def test_plain_hparams_rebuild_the_same_module(name):
    """Checkpoints keep hyper-parameters as plain data; the dataclasses (the multimodal union of adapter configs
    included) come back from their field types."""
    import perceiverio.training as training

    task = getattr(training, name)()
    leaves = str(dict(task.hparams))
    assert "Config(" not in leaves and "__class__" not in leaves  # plain data only
    again = type(task)(**dict(task.hparams))
    assert again.model_config == task.model_config and again.optimizer_config == task.optimizer_config


def test_on_a_gpu_the_step_makes_no_value_check(monkeypatch):
    """On CUDA the task's forward turns off the value-reading checks (each a host synchronisation) for the call
    only; on the CPU they stay on. The device is set by hand: the forward itself runs on the CPU here."""
    import torch

    from perceiverio import MaskedLanguageModelConfig
    from perceiverio.core.checks import value_checks_enabled

    task = MaskedLanguageModelTask(MaskedLanguageModelConfig.tiny(max_seq_len=16))
    seen = []
    monkeypatch.setattr(task.model, "forward", lambda *a, **k: seen.append(value_checks_enabled()))
    ids = torch.zeros(1, 16, dtype=torch.long)
    task(ids)
    task._device = torch.device("cuda", 0)
    task(ids)
    assert seen == [True, False] and value_checks_enabled()
