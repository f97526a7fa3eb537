"""The examples run as documented (with tiny sizes and budgets)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perceiver_ar_example_trains_scores_and_samples(capsys):
    example = _load("perceiver_ar_text")
    example.main(
        ["--seconds", "120", "--max-steps", "150", "--max-context", "64", "--num-latents", "16", "--width", "32",
         "--layers", "1", "--prompt", "The for", "--new-bytes", "20"]
    )  # fmt: skip
    out = capsys.readouterr().out
    held, unigram = map(
        float, re.search(r"held out: ([\d.]+) bits per byte \(unigram baseline ([\d.]+)\)", out).groups()
    )
    assert held < unigram - 0.5  # 150 steps already beat the byte frequencies
    assert "ms/byte cached" in out and "\n\nThe for" in out
