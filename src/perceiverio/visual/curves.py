"""Training curves from a Lightning ``CSVLogger`` log (``metrics.csv``): one panel per metric family, x = step.

``metrics.csv`` has a header ``epoch,step,<metric>,...`` and one row per logging call, with empty cells for the
metrics that call did not log. A metric's *family* is what it measures, whatever the split: ``train/loss``,
``val/loss`` and ``val_loss`` share the panel ``loss``; every learning-rate column (``train/lr``, ``lr-AdamW``,
``learning_rate``) goes to the panel ``learning rate``. Panels are laid out three to a row, each
``PANEL_SIZE`` pixels, so a plot of k families is ``min(k, 3)·480 × ceil(k / 3)·320`` pixels.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from . import files

PANEL_SIZE = (480, 320)  # pixels per panel (width, height)
COLUMNS = 3  # panels per row
DPI = 100
SPLITS = ("train", "val", "validation", "test", "predict")
LR_NAMES = ("lr", "learning_rate", "learning rate")


@dataclass(frozen=True)
class Curve:
    """One logged metric: its column name and its (step, value) points in log order."""

    name: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


def read_metrics(path: str | os.PathLike) -> list[Curve]:
    """The curves of a CSVLogger ``metrics.csv`` (every column but ``epoch`` and ``step`` that holds at least one
    finite number). ValueError when the file has no ``step`` column or no logged value."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ValueError(f"{path} is empty: the run has logged nothing yet")
    header = [cell.strip() for cell in rows[0]]
    if "step" not in header:
        raise ValueError(f"{path} is not a CSVLogger metrics file: its header {header[:6]} has no 'step' column")
    step_at = header.index("step")
    points: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows[1:]:
        step = _number(row[step_at]) if step_at < len(row) else None
        if step is None:
            continue
        for i, name in enumerate(header):
            if name in ("epoch", "step") or not name or i >= len(row):
                continue
            value = _number(row[i])
            if value is not None:
                xs, ys = points.setdefault(name, ([], []))
                xs.append(step)
                ys.append(value)
    if not points:
        raise ValueError(f"{path} holds no logged value (only its header, or no finite number)")
    return [Curve(name, tuple(xs), tuple(ys)) for name, (xs, ys) in points.items()]


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def family(name: str) -> str:
    """The panel of a metric column: the name without its split (``val/acc`` → ``acc``, ``train_loss`` →
    ``loss``); learning-rate columns → ``learning rate``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    base = parts[-1] if parts else name
    if len(parts) == 1:
        for split in SPLITS:
            for sep in ("_", "-", "."):
                if base.startswith(split + sep) and len(base) > len(split) + 1:
                    base = base[len(split) + 1 :]
                    break
            else:
                continue
            break
    lowered = base.lower()
    if lowered in LR_NAMES or lowered.startswith(("lr-", "lr_", "lr/", "learning_rate")):
        return "learning rate"
    for suffix in ("_epoch", "_step"):  # Lightning's on_step/on_epoch variants of one metric
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            lowered = lowered[: -len(suffix)]
    return lowered


def group(curves: list[Curve]) -> dict[str, list[Curve]]:
    """Curves by family, families in first-logged order with ``loss`` first and ``learning rate`` last."""
    families: dict[str, list[Curve]] = {}
    for curve in curves:
        families.setdefault(family(curve.name), []).append(curve)
    order = sorted(families, key=lambda f: (f != "loss", f == "learning rate"))
    return {f: families[f] for f in order}


def figure_size(num_panels: int) -> tuple[int, int]:
    """Width and height in pixels of the plot of ``num_panels`` families."""
    cols = min(num_panels, COLUMNS)
    return cols * PANEL_SIZE[0], math.ceil(num_panels / COLUMNS) * PANEL_SIZE[1]


def plot_curves(curves: list[Curve], out: str | os.PathLike, title: str | None = None) -> tuple[int, int]:
    """Draw ``curves`` (one panel per family, x = step, a legend when a panel holds several) into the PNG ``out``
    (written atomically: a temporary file, then a rename). Returns the picture's size in pixels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    families = group(curves)
    if not families:
        raise ValueError("no curve to plot")
    width, height = figure_size(len(families))
    cols = min(len(families), COLUMNS)
    rows = math.ceil(len(families) / COLUMNS)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, members) in zip(axes.flat, families.items()):
        _panel(ax, name, members)
    for ax in list(axes.flat)[len(families) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, Path(out))
    return width, height


def _panel(ax, name: str, members: list[Curve]) -> None:
    for curve in members:
        marker = "o" if len(curve.steps) <= 20 else None  # sparse curves (validation) show their points
        ax.plot(curve.steps, curve.values, marker=marker, markersize=3, linewidth=1.2, label=curve.name)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def save_figure(fig, out: Path) -> None:
    """Save ``fig`` as a PNG to ``out``, atomically."""
    files.save_figure(fig, out, dpi=DPI)


def find_metrics(run_dir: str | os.PathLike) -> tuple[Path, int]:
    """The ``metrics.csv`` of ``run_dir``: its own, else the newest (last modified) one in the version folders
    below it (``RUN/version_*`` or ``RUNS/NAME/version_*``, two levels at most). Returns it and how many were
    found. FileNotFoundError when there is none."""
    root = Path(run_dir)
    if not root.is_dir():
        what = "a file" if root.exists() else "no such folder"
        raise FileNotFoundError(f"RUN_DIR {str(root)!r} must be a run folder, got {what}")
    own = root / "metrics.csv"
    if own.is_file():
        return own, 1
    found = [p for pattern in ("*/metrics.csv", "*/*/metrics.csv") for p in root.glob(pattern) if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"RUN_DIR {str(root)!r} has no metrics.csv, in itself or in a version folder below it (fit writes one "
            "with the CSVLogger: trainer.logger)"
        )
    return max(found, key=lambda p: (p.stat().st_mtime, str(p))), len(found)
