"""Held-out bits per byte against training minutes: the Perceiver AR recipe's validation curve (its ``metrics.csv``)
and the decoder-only Transformer baselines of ``clm_baseline.py`` (one point per run and context).

    python benchmarks/plot_clm_quality.py --metrics runs/clm-shakespeare/version_0/metrics.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def perceiver_curve(metrics: Path) -> list[tuple[float, float]]:
    """``(minutes, val bits per byte)`` of every validation in a run's CSV log (``val/elapsed_s``: the run's clock,
    validation included)."""
    points = []
    with metrics.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/bits_per_byte") and row.get("val/elapsed_s"):
                points.append((float(row["val/elapsed_s"]) / 60, float(row["val/bits_per_byte"])))
    return sorted(set(points))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics", type=Path, required=True, help="the Perceiver AR run's metrics.csv")
    p.add_argument("--baseline", type=Path, default=HERE / "results" / "clm_baseline.json")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "pictures" / "perceiver-ar-shakespeare.png")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    curve = perceiver_curve(args.metrics)
    ax.plot(
        *zip(*curve),
        marker="o",
        color="C0",
        label="Perceiver AR (clm-shakespeare.yaml), context 256 (validations timed)",
    )
    runs = json.loads(args.baseline.read_text()) if args.baseline.is_file() else {}
    contexts = sorted({r["context"] for r in runs.values()})
    for i, context in enumerate(contexts):
        pts = sorted((r["minutes"], r["val_bits_per_byte"]) for r in runs.values() if r["context"] == context)
        ax.plot(
            *zip(*pts),
            "s",
            markersize=7,
            color=f"C{i + 1}",
            label=f"Transformer, context {context}: the end of each run (5 or 30 min; scoring not timed)",
        )
    unigram = next(iter(runs.values()))["unigram_bits_per_byte"] if runs else None
    if unigram:
        ax.axhline(unigram, color="grey", lw=0.8, ls=":", label=f"unigram {unigram:.2f}")
    ax.axhline(2.3, color="red", lw=0.8, ls=":", label="target 2.3")
    ax.set_xlabel("training minutes on 2 CPU cores")
    ax.set_ylabel("held-out bits per byte")
    ax.set_ylim(1.9, 5.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("tinyshakespeare, last 10% held out, 2.3–2.4M parameters", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
