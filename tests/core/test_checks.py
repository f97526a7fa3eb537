"""The value-reading input checks: on in eager mode, off behind one switch and while compiling or exporting."""

from __future__ import annotations

import pytest
import torch

from perceiverio import MaskedLanguageModel, MaskedLanguageModelConfig, set_value_checks
from perceiverio.core.checks import check_range, value_checks_enabled


@pytest.fixture
def checks_on():
    previous = set_value_checks(True)
    yield
    set_value_checks(previous)


def test_check_range_names_the_argument_and_the_values(checks_on):
    check_range(torch.tensor([0, 4]), 0, 5, "ids")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\), got values in \[-1, 7\]"):
        check_range(torch.tensor([-1, 3, 7]), 0, 5, "ids")


def test_switch_turns_value_checks_off_and_back(checks_on):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    bad = torch.tensor([[1, 2, 999]])
    with pytest.raises(ValueError, match="input_ids must lie in"):
        model(bad)
    assert set_value_checks(False) is True and not value_checks_enabled()
    with pytest.raises(IndexError):  # unchecked: torch's own error from the embedding lookup
        model(bad)
    set_value_checks(True)
    with pytest.raises(ValueError, match="input_ids must lie in"):
        model(bad)


def test_value_checks_are_off_while_compiling(checks_on):
    seen = []

    def probe(x):
        seen.append(value_checks_enabled())
        return x + 1

    torch.compile(probe, backend="eager", fullgraph=True)(torch.zeros(2))
    assert seen == [False]
    assert value_checks_enabled()  # eager again afterwards


def test_shape_checks_stay_on_when_value_checks_are_off(checks_on):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    set_value_checks(False)
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 5))
