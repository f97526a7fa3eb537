"""Smoke test of benchmarks/profile_recipes.py: one timed step of a shrunken MLM recipe, through the real CLI parser
and Lightning loop; the phases must add up to the step and the FLOP count, matmul reference and profile be filled."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("lightning")
REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("profile_recipes", REPO / "benchmarks" / "profile_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_step_of_a_small_mlm(tmp_path, monkeypatch):
    pr = _load()
    monkeypatch.setattr(pr, "matmul_gflops", lambda: {64: 1.0})  # the real one takes a second per call
    out = tmp_path / "profile.json"
    small = ["data.batch_size=2", "data.seq_len=32", "model.max_seq_len=32", "model.encoder.num_latents=8"]
    argv = [str(REPO / "configs" / "mlm.yaml"), "--steps", "1", "--warmup", "0", "--json", str(out), "--markdown"]
    assert pr.main([*argv, "--override", *small]) == 0
    (result,) = json.loads(out.read_text())
    med = result["median_ms"]
    assert result["batch"] == 2 and result["task"] == "MaskedLanguageModelTask"
    assert med["step"] > 0 and all(med[k] >= 0 for k in ("data", "forward", "backward", "optimiser", "log"))
    assert sum(med[k] for k in pr.PHASES[1:]) == pytest.approx(med["step"])
    assert result["gflop_per_step"] > 0 and result["matmul_gflops"] == 1.0
    assert 0 < result["matmul_share"] < 1 and result["top_ops"]
