"""The input contract of every public entry point, property-based: generated bad inputs end in a clear
``ValueError``/``TypeError``/``FileNotFoundError`` naming the argument (or the damaged file or key), and finite
inputs never give a non-finite output. The generators are in cases.py, entry_points.py and loaders.py.

Bounded for ``make test`` (``PERCEIVERIO_FUZZ_EXAMPLES`` cases per entry point, default 30, a tenth of that for
the CLI's Lightning commands, derandomised); a
fresh run with another seed: ``PERCEIVERIO_FUZZ_EXAMPLES=300 PERCEIVERIO_FUZZ_SEED=1 pytest tests/fuzz``, or the
tally of ``python tests/fuzz/run.py --examples 300 --seed 1``.
"""

from __future__ import annotations

import os

import pytest
from fuzz.attention import ATTENTION_ENTRY_POINTS
from fuzz.cases import cases, outcome
from fuzz.causal import CAUSAL_ENTRY_POINTS
from fuzz.cli import CLI_ENTRY_POINTS
from fuzz.data_modules import DATA_ENTRY_POINTS
from fuzz.entry_points import ENTRY_POINTS
from fuzz.loaders import LOADER_ENTRY_POINTS
from fuzz.predict import PREDICT_ENTRY_POINTS
from fuzz.vision_data import VISION_DATA_ENTRY_POINTS
from hypothesis import HealthCheck, given, seed, settings

EXAMPLES = int(os.environ.get("PERCEIVERIO_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("PERCEIVERIO_FUZZ_SEED")


# entry points whose cases are slow (a Lightning run of one step each): a tenth of the examples in make test
SLOW = {"cli fit/validate/test/predict": 10}


def _fuzzed(test, slow: int = 1):
    test = settings(
        max_examples=max(EXAMPLES // slow, 3),
        deadline=None,
        database=None,
        derandomize=SEED is None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    return seed(int(SEED))(test) if SEED is not None else test


ALL = [
    *ENTRY_POINTS,
    *LOADER_ENTRY_POINTS,
    *DATA_ENTRY_POINTS,
    *VISION_DATA_ENTRY_POINTS,
    *PREDICT_ENTRY_POINTS,
    *CLI_ENTRY_POINTS,
    *ATTENTION_ENTRY_POINTS,
    *CAUSAL_ENTRY_POINTS,
]


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.name)
def test_bad_inputs_get_clear_errors_and_finite_inputs_finite_outputs(entry):
    @given(case=cases(entry))
    def check(case):
        kind, detail = outcome(case)
        assert kind in ("ok", "clear"), f"{case!r}: {kind}: {detail}"

    _fuzzed(check, SLOW.get(entry.name, 1))()
