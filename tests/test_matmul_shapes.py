"""benchmarks/matmul_shapes.py: the recorded matrix products of a forward+backward match the closed form, and one
shrunken recipe runs end to end through the real CLI parser."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ms(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the script imports profile_recipes beside it
    spec = importlib.util.spec_from_file_location("matmul_shapes", REPO / "benchmarks" / "matmul_shapes.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "matmul_shapes", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("profile_recipes", None)


def test_a_linear_layer_records_its_three_products_with_their_flops(ms):
    m, k, n = 16, 64, 32
    layer, x = torch.nn.Linear(k, n), torch.randn(m, k, requires_grad=True)
    calls = ms.record(lambda: layer(x).sum())
    shapes = sorted(tuple(s.shape for s in specs[0] if isinstance(s, ms.TensorSpec)) for _, specs, _ in calls)
    # forward x·Wᵀ + b; backward: grad_x = g·W and grad_W = gᵀ·x
    assert shapes == sorted([((n,), (m, k), (k, n)), ((m, n), (n, k)), ((n, m), (m, k))])
    result = ms.own_shape_rate(calls, repeats=1, min_seconds=0.0)
    assert result["gflop"] == pytest.approx(3 * 2 * m * k * n / 1e9)
    assert result["seconds"] > 0 and result["uncounted"] == [] and len(result["calls"]) == 3


def test_a_shrunken_mlm_recipe_end_to_end(ms, monkeypatch, tmp_path):
    monkeypatch.setattr(ms, "matmul_gflops", lambda: {64: 2.0})  # the real one takes a second per call
    out = tmp_path / "shapes.json"
    small = ["data.batch_size=2", "data.seq_len=32", "model.max_seq_len=32", "model.encoder.num_latents=8"]
    assert ms.main([str(REPO / "configs" / "mlm.yaml"), "--json", str(out), "--override", *small]) == 0
    (result,) = json.loads(out.read_text())
    assert result["reference_gflops"] == 2.0 and result["gflop"] > 0
    assert result["ratio"] == pytest.approx(result["gflops"] / 2.0)
    ops = {c["op"] for c in result["calls"]}
    assert any("addmm" in op or "linear" in op for op in ops), ops
    assert any("attention" in op or "bmm" in op for op in ops), ops  # the cross- and self-attention
