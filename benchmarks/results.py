"""Re-run the training recipes and regenerate docs/results.md (``make results``).

Each recipe is one ``perceiverio fit --config configs/<name>.yaml`` (its wall-time budget is in the config), then one
``perceiverio test`` of the final checkpoint on the recipe's held-out test set. Per run this writes
``docs/results/<name>-seed<N>.json`` (commands, wall time, steps, test metric, validation curve against wall time);
the page (table + one PNG of validation curves per recipe) is then rebuilt from every JSON present, so recipes can be
re-run one at a time:

    python benchmarks/results.py --recipes fashion-mnist --seeds 0,1    # train, test, rebuild the page
    python benchmarks/results.py --page-only                            # rebuild the page from the JSON files

Runs go under ``runs/results/<name>-seed<N>/`` (checkpoints, exported model, CSV log). Run on an otherwise idle
machine: the budgets are wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    config: str
    metric: str  # the test metric logged by `perceiverio test`, e.g. "test/acc"
    curve: str  # the validation metric drawn against wall time, e.g. "val/acc"
    unit: str  # "%" (fractions shown as percent) or "px" / "dB"
    higher_is_better: bool
    target: str  # the acceptance target, in words
    baseline: str  # a reference number for the same data, in words
    paper: str  # the paper's number where one exists
    fit_args: tuple[str, ...] = ()
    test_args: tuple[str, ...] = ()
    extra_metrics: tuple[str, ...] = field(default=())
    pretrain: str | None = None  # a stage-1 config (e.g. MLM); its exported model warm-starts the fit (init_from)
    pretrain_args: tuple[str, ...] = ()
    plot_with: str | None = None  # another recipe whose curves share this recipe's figure (e.g. from scratch)


RECIPES = {
    r.name: r
    for r in (
        Recipe(
            name="fashion-mnist",
            task="Fashion-MNIST classification (60k/10k, 28×28)",
            config="configs/fashion-mnist.yaml",
            metric="test/acc",
            curve="val/acc",
            unit="%",
            higher_is_better=True,
            target="≥ 91% in ≤ 20 min",
            baseline="linear classifier 84%; small CNN 91–93%",
            paper="— (ImageNet: 82.1% top-1, conv stem)",
        ),
        Recipe(
            name="sst2",
            task="SST-2 sentiment from UTF-8 bytes, MLM pre-training (25 min) then fine-tuning (20 min)",
            config="configs/sst2.yaml",
            pretrain="configs/sst2-mlm.yaml",
            plot_with="sst2-scratch",
            metric="test/acc",
            curve="val/acc",
            unit="%",
            higher_is_better=True,
            target="≥ 80% GLUE dev in ≤ 45 min in all",
            baseline="majority 50.9%; bag-of-words logistic regression ~80%",
            paper="93.2% (201M bytes model, MLM on C4 + Wikipedia)",
        ),
        Recipe(
            name="multimodal",
            task="Video + audio autoencoding, Big Buck Bunny 30 s (first 80% trained, last 20% tested)",
            config="configs/multimodal.yaml",
            fit_args=("--data.path", "../shared/data/video/big_buck_bunny_0_30.webm"),
            test_args=("--data.path", "../shared/data/video/big_buck_bunny_0_30.webm"),
            metric="test/psnr_image",
            curve="val/psnr_image",
            unit="dB",
            higher_is_better=True,
            target="video PSNR above the PCA baseline with the same latent floats",
            baseline="PCA with ≤ 8,192 floats per clip (multimodal_pca.py): whole clips 19.6 dB, 4×4 patches 26.2 dB",
            paper="Kinetics-700 at 88× compression: video 24.37 dB, audio 26.97 dB",
            extra_metrics=("test/psnr_audio",),
        ),
        Recipe(
            name="flow",
            task="Optical flow on procedural pairs (45 min); tested on the 9 FlyingChairs pairs at 384×512",
            config="configs/flow-synthetic.yaml",
            test_args=("--data.test_path", "../shared/data/flow/flyingchairs"),
            metric="test/epe",
            curve="val/epe",
            unit="px",
            higher_is_better=False,
            target="EPE ≤ 0.5 × zero flow on Middlebury and on FlyingChairs",
            baseline="zero flow: FlyingChairs 10.51 px; Middlebury at 64×96 (the val/epe curve) 4.40 px",
            paper="Sintel clean 1.81 px, KITTI 4.98 (41M model, AutoFlow)",
            extra_metrics=("test/zero_epe",),
        ),
        Recipe(
            name="sst2-scratch",
            task="SST-2 sentiment from UTF-8 bytes, from scratch for the same 45 min",
            config="configs/sst2.yaml",
            fit_args=("--trainer.max_time", "00:00:45:00"),
            metric="test/acc",
            curve="val/acc",
            unit="%",
            higher_is_better=True,
            target="(the comparison: what pre-training buys)",
            baseline="majority 50.9%; bag-of-words logistic regression ~80%",
            paper="—",
        ),
    )
}


# ------------------------------------------------------------------------------------------------------ running
def _run(cmd: list[str], log: Path) -> float:
    """Run a command (output to ``log``), return its wall time; exit with the log's tail when it fails."""
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n" + "\n".join(tail))
    return elapsed


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _logger_override(run_dir: Path, version: str) -> Path:
    """A config file that sends the run's log to one CSV file under ``run_dir`` (merged after the recipe)."""
    path = run_dir / f"logger-{version}.yaml"
    path.write_text(
        "trainer:\n  logger:\n    - class_path: lightning.pytorch.loggers.CSVLogger\n"
        f"      init_args: {{save_dir: {json.dumps(str(run_dir))}, name: log, version: {version}}}\n"
    )
    return path


def run_recipe(recipe: Recipe, seed: int, python: str) -> dict:
    run_dir = ROOT / "runs" / "results" / f"{recipe.name}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cli = [python, "-m", "perceiverio.cli"]
    pre_cmd, pre_s, pre_train_s, pre_steps = None, 0.0, 0.0, 0
    init: list[str] = []
    if recipe.pretrain is not None:
        pre_dir = run_dir / "pretrain"
        pre_dir.mkdir(exist_ok=True)
        pre = ["fit", "--config", recipe.pretrain, "--seed_everything", str(seed), *recipe.pretrain_args]
        pre_where = ["--checkpoint.dirpath", str(pre_dir / "checkpoints"), "--export.dirpath", str(pre_dir / "model")]
        print(f"[{recipe.name} seed {seed}] perceiverio {' '.join(pre)}", flush=True)
        logger = str(_logger_override(run_dir, "pretrain"))
        pre_s = _run([*cli, *pre, *pre_where, "--config", logger], run_dir / "pretrain.log")
        pre_rows = _rows(run_dir / "log" / "pretrain" / "metrics.csv")
        pre_train_s = max((float(r["val/elapsed_s"]) for r in pre_rows if r.get("val/elapsed_s")), default=0.0)
        pre_steps = max((int(r["step"]) for r in pre_rows if r.get("step")), default=0)
        pre_cmd = "perceiverio " + " ".join([*pre, "--export.dirpath", str((pre_dir / "model").relative_to(ROOT))])
        init = ["--model.init_args.init_from", str((pre_dir / "model").relative_to(ROOT))]
    fit = ["fit", "--config", recipe.config, "--seed_everything", str(seed), *init, *recipe.fit_args]
    where = ["--checkpoint.dirpath", str(run_dir / "checkpoints"), "--export.dirpath", str(run_dir / "model")]
    print(f"[{recipe.name} seed {seed}] perceiverio {' '.join(fit)}", flush=True)
    fit_s = _run([*cli, *fit, *where, "--config", str(_logger_override(run_dir, "fit"))], run_dir / "fit.log")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    test = ["test", "--config", recipe.config, "--ckpt_path", str(ckpt.relative_to(ROOT)), *recipe.test_args]
    print(f"[{recipe.name} seed {seed}] perceiverio {' '.join(test)}", flush=True)
    test_s = _run([*cli, *test, "--config", str(_logger_override(run_dir, "test"))], run_dir / "test.log")
    fit_rows = _rows(run_dir / "log" / "fit" / "metrics.csv")
    test_rows = _rows(run_dir / "log" / "test" / "metrics.csv")
    tested = {k: float(v) for row in test_rows for k, v in row.items() if k.startswith("test/") and v}
    if recipe.metric not in tested:
        sys.exit(f"{recipe.name}: {recipe.metric} not in the test log (found {sorted(tested)})")
    curve = [
        (float(row["val/elapsed_s"]), float(row[recipe.curve]))
        for row in fit_rows
        if row.get(recipe.curve) and row.get("val/elapsed_s")
    ]
    steps = max((int(row["step"]) for row in fit_rows if row.get("step")), default=0)
    train_s = max((t for t, _ in curve), default=math.nan)  # the last validation's val/elapsed_s
    return dict(
        recipe=recipe.name,
        seed=seed,
        pretrain_command=pre_cmd,
        pretrain_wall_s=round(pre_s, 1),
        pretrain_train_s=round(pre_train_s, 1),
        pretrain_steps=pre_steps,
        fit_command="perceiverio " + " ".join(fit),
        test_command="perceiverio " + " ".join(test),
        fit_wall_s=round(fit_s, 1),
        train_s=round(train_s, 1),
        test_wall_s=round(test_s, 1),
        steps=steps,
        metric=recipe.metric,
        value=tested[recipe.metric],
        test_metrics=tested,
        curve=curve,
        machine=f"{os.cpu_count()} cores",
        date=time.strftime("%Y-%m-%d"),
    )


# --------------------------------------------------------------------------------------------------------- page
def _fmt(value: float, unit: str) -> str:
    return f"{100 * value:.1f}%" if unit == "%" else f"{value:.2f} {unit}"


def _plot(recipe: Recipe, runs: list[dict], path: Path, others: list[dict] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    for r in [*runs, *others]:
        if r["curve"]:
            t, v = zip(*r["curve"])
            scale = 100 if recipe.unit == "%" else 1
            offset = r.get("pretrain_train_s") or 0.0  # a fine-tuning curve starts after its pre-training
            ax.plot(
                [(x + offset) / 60 for x in t],
                [y * scale for y in v],
                marker="o",
                ms=3,
                label=f"{r['recipe']}, seed {r['seed']}",
            )
    ax.set_xlabel("wall time (minutes, 2 cores)")
    ax.set_ylabel(f"{recipe.curve} ({recipe.unit})")
    ax.set_title("\n".join(textwrap.wrap(recipe.task, 75)), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _train_s(run: dict) -> float:
    """Training seconds of a run, pre-training included (the time budgets, not start-up or testing)."""
    fit = run["train_s"] if math.isfinite(run["train_s"]) else run["fit_wall_s"]
    pre = run.get("pretrain_train_s") or run.get("pretrain_wall_s") or 0.0
    return fit + pre


def write_page(out: Path) -> Path:
    runs: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        runs.setdefault(r["recipe"], []).append(r)
    lines = [
        "# Results: the recipes, measured",
        "",
        "Every number below comes from `python benchmarks/results.py` (`make results`) on 2 idle CPU cores: one",
        "`perceiverio fit` of the recipe's config (its wall-time budget is in the config), then `perceiverio test` of",
        "the final checkpoint on the held-out test set. No model selection: the last weights are tested. The JSON of",
        "each run (commands, curve, every test metric) is in `docs/results/`.",
        "",
        "| task | command | wall time | steps | test metric | seeds | baseline | paper | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, recipe in RECIPES.items():
        if name not in runs:
            continue
        rs = sorted(runs[name], key=lambda r: r["seed"])
        values = ", ".join(_fmt(r["value"], recipe.unit) for r in rs)
        minutes = max(_train_s(r) for r in rs) / 60
        command = f"`{rs[0]['fit_command']}`"
        steps = str(rs[0]["steps"])
        if rs[0].get("pretrain_command"):
            command = f"`{rs[0]['pretrain_command']}`, then `{rs[0]['fit_command']}`"
            steps = f"{rs[0]['pretrain_steps']} + {steps}"
        lines.append(
            f"| {recipe.task} | {command} | {minutes:.1f} min | {steps} | "
            f"{recipe.metric} {values} | {', '.join(str(r['seed']) for r in rs)} | {recipe.baseline} | "
            f"{recipe.paper} | {recipe.target} |"
        )
    for name, recipe in RECIPES.items():
        if name not in runs:
            continue
        png = out / f"{name}.png"
        _plot(recipe, runs[name], png, runs.get(recipe.plot_with, []) if recipe.plot_with else [])
        lines += ["", f"## {recipe.task}", "", f"![{recipe.curve} against wall time](results/{png.name})", ""]
        for r in sorted(runs[name], key=lambda r: r["seed"]):
            also = [
                f"{m} = {_fmt(r['test_metrics'][m], recipe.unit)}"
                for m in recipe.extra_metrics
                if m in r["test_metrics"]
            ]
            if r["curve"]:  # the last validation of the run (for flow: the Middlebury pair)
                also.append(f"last {recipe.curve} = {_fmt(r['curve'][-1][1], recipe.unit)}")
            if also:
                lines.append(f"- seed {r['seed']}: also {', '.join(also)}")
            lines.append(
                f"- seed {r['seed']} ({r['date']}): {recipe.metric} = {_fmt(r['value'], recipe.unit)} after "
                f"{r['steps']} steps, {_train_s(r) / 60:.1f} min of training in all; test: `{r['test_command']}`"
            )
    page = DOCS / "results.md"
    extra = DOCS / "results-notes.md"
    if extra.is_file():
        lines += ["", extra.read_text().rstrip()]
    page.write_text("\n".join(lines) + "\n")
    return page


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {list(RECIPES)}")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (a second seed checks reproducibility)")
    p.add_argument("--page-only", action="store_true", help="only rebuild docs/results.md from the JSON files")
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    out = DOCS / "results"
    out.mkdir(exist_ok=True)
    if not args.page_only:
        for name in args.recipes.split(","):
            if name not in RECIPES:
                sys.exit(f"unknown recipe {name!r}; known: {list(RECIPES)}")
            for seed in (int(s) for s in args.seeds.split(",")):
                result = run_recipe(RECIPES[name], seed, args.python)
                (out / f"{name}-seed{seed}.json").write_text(json.dumps(result, indent=1) + "\n")
                print(f"[{name} seed {seed}] {result['metric']} = {result['value']:.4f}", flush=True)
    print(write_page(out))


if __name__ == "__main__":
    main()
