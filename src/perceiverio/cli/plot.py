"""``perceiverio plot RUN_DIR [--out FILE.png] [--title TEXT]``: draw a run's training curves (loss, every logged
metric, learning rate) from its CSV log to a PNG.

RUN_DIR is a version folder holding ``metrics.csv`` (the CSVLogger's, e.g. ``runs/mlm/version_3``) or a folder
above it (``runs/mlm``, ``runs``), where the newest version is drawn and named. One panel per metric family
(``train/loss`` and ``val/loss`` share one), x = step, three panels to a row of 480 × 320 pixels each. The PNG goes
to ``--out`` (default: ``curves.png`` next to ``metrics.csv``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="perceiverio plot", description=__doc__.split("\n\n")[0].strip("`"))
    parser.add_argument("run_dir", type=Path, help="a run's version folder (metrics.csv) or a folder above it")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: curves.png next to metrics.csv)")
    parser.add_argument("--title", help="a title above the panels (default: the run folder)")
    args = parser.parse_args(argv)
    from ..visual.curves import find_metrics, plot_curves, read_metrics

    try:
        if args.out is not None and args.out.suffix.lower() != ".png":
            raise ValueError(f"--out must name a .png file, got {str(args.out)!r}")
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out must name a .png file, got the folder {str(args.out)!r}")
        metrics, count = find_metrics(args.run_dir)
        if count > 1:
            print(f"perceiverio plot: {count} runs under {args.run_dir}; drawing the newest, {metrics.parent}")
        try:
            curves = read_metrics(metrics)
        except (ValueError, OSError) as e:
            raise ValueError(f"RUN_DIR: {e}") from None
        out = args.out if args.out is not None else metrics.parent / "curves.png"
        title = args.title if args.title is not None else str(metrics.parent)
        try:
            width, height = plot_curves(curves, out, title)
        except OSError as e:
            raise ValueError(f"--out {str(out)!r} cannot be written: {e.strerror or e}") from None
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SystemExit(f"perceiverio plot: {e}") from None
    steps = max(c.steps[-1] for c in curves)
    print(f"wrote {out} ({width}×{height} pixels): {len(curves)} curves up to step {steps:g} from {metrics}")
