"""Shared fixtures. ``../shared`` (golden outputs of DeepMind's code, datasets) sits beside the checkout in our
workspace and CI; a user's fresh clone has none, so tests that need it skip with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def golden():
    """``golden(case)`` -> (npz arrays as a dict, JSON sidecar); skips when ``../shared/golden`` is absent."""

    def load(case: str):
        npz = GOLDEN / f"{case}.npz"
        if not npz.exists():
            pytest.skip(f"golden file {npz} not found: ../shared is absent (only in the project workspace)")
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads((GOLDEN / f"{case}.json").read_text())
        return arrays, meta

    return load


def assert_close_rel(actual: torch.Tensor | np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    """max |actual - expected| <= rtol · max |expected| (the golden-file criterion)."""
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert a.shape == expected.shape, f"shape {a.shape} != expected {expected.shape}"
    scale = max(float(np.abs(expected).max()), 1e-12)
    err = float(np.abs(a.astype(np.float64) - expected.astype(np.float64)).max())
    assert err <= rtol * scale, f"max abs error {err:.3e} > {rtol:g} x max|expected| ({scale:.3e})"
