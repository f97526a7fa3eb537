"""Where one training step of each recipe spends its time, and how its FLOP rate compares with the machine's matmul.

    python benchmarks/profile_recipes.py                                   # the five recipes, 20 steps after 3
    python benchmarks/profile_recipes.py configs/sst2.yaml --steps 50 --threads 2 --json sst2.json
    python benchmarks/profile_recipes.py configs/mlm.yaml --override data.batch_size=64 --markdown
    python benchmarks/profile_recipes.py --steps 1 --warmup 0               # smoke run: does every recipe work?

Run it from the repository root, on idle cores: relative paths in the configs (``../shared/data/sst2``) are read
from the working directory, as ``perceiverio fit`` reads them, and a busy machine inflates every phase.

What runs. Each config is parsed by LightningCLI exactly as ``perceiverio fit --config X`` parses it (the same
model and data base classes, subclass mode, ``seed_everything`` 0), then ``--override KEY=VALUE`` pairs
(``data.path=FOLDER``, ``model.encoder.num_latents=32``). The script then sets the trainer to stop after
``warmup + 1 + steps + 2`` steps on one CPU process, with no validation, checkpoint, progress bar or model summary
(they act at epoch or validation boundaries, not per step; the CLI's ``checkpoint``/``export``/``progress``
callbacks are not attached), and points the config's loggers (TensorBoard, CSV) at a temporary folder that is
deleted afterwards, so that logging costs what it costs in a real run. It then calls ``trainer.fit``: the steps
measured are Lightning's own (its closure, ``zero_grad``, gradient clipping, learning-rate scheduler, logger
writes), not a re-implementation. Steps, in order: ``warmup`` untimed; one step that counts FLOPs (untimed);
``steps`` timed steps; two steps under ``torch.profiler`` (untimed, the profiler slows small operators). The
FLOP-counting step also takes the one-off costs of a first step (lazy imports of the optimiser's first ``step``), so
``--warmup 0`` still times steady steps. Overrides come after the config files on the command line.

Columns (milliseconds per step, median over the timed steps; the JSON has means and every step too):

- step: wall time from the end of one step (``on_train_batch_end``) to the end of the next: everything.
- data: measured; ``next()`` on the training DataLoader's iterator (dataset reads, masking, collate), timed by
  wrapping the data module's ``train_dataloader``. Lightning prefetches one batch, so a step's data time is the
  fetch of the next batch; it happens between the two steps either way.
- augment: measured; from ``on_train_batch_start`` to the task model's forward: the image task's augmentation
  (RandAugment, MixUp/CutMix), the multimodal task's sampling of output points, else only the batch checks.
- forward: measured; from the model's forward to the task's ``log_train`` call: the model, and the loss where the
  task computes it outside the model (flow's end-point error, the multimodal loss and targets).
- log: measured; the task's ``log_train`` (``self.log`` of the step's values and the learning rate).
- backward: measured; ``on_before_backward`` to ``on_after_backward``.
- optimiser: measured; Lightning's ``zero_grad`` (``on_before_zero_grad`` to ``on_before_backward``) plus
  ``on_before_optimizer_step`` to the end of ``optimizer.step`` (gradient clipping when the config has
  ``gradient_clip_val``, then the LAMB/AdamW update). The JSON splits it into zero_grad, clip and update.
- other: derived; step minus the measured phases: Lightning's loop between and around the hooks, the
  learning-rate scheduler, the logger connector (metrics to TensorBoard/CSV every ``log_every_n_steps``).
- GFLOP/step: ``torch.utils.flop_counter.FlopCounterMode`` over the forward and backward of one step (the window
  of the forward and backward columns; augmentation and optimiser are not counted), with the math attention backend
  (the counter does not see the fused CPU attention kernels). Gradient checkpointing would add recomputation that
  is not counted.
- GFLOP/s: that count over the median forward+backward time, and over the median step time.
- matmul GFLOP/s: float32 ``a @ b`` of 512² and 1024² matrices, best of 5 repeats per size, in the same process
  with the same threads, right before and right after the recipe's steps; the reference is the mean of the best
  rate before and the best rate after. ratio: the achieved rate over that reference (the target is 0.5).
- matmul share: of the self CPU time of every operator in the forward+backward window of the two profiled steps,
  the share in matrix products (mm, addmm, bmm, linear, attention kernels, convolutions); top op: the operator
  with the most self CPU time there. The report lists the top operators and the operators per step, which
  tell a step that is matmul-bound from one that is bound by dispatching many small elementwise operators.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningDataModule
from lightning.pytorch.cli import LightningCLI
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from perceiverio.training import PerceiverTask

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("fashion-mnist", "sst2", "flow-synthetic", "multimodal", "mlm")
PHASES = ("step", "data", "augment", "forward", "backward", "optimiser", "log", "other")
DETAILS = ("fwd_bwd", "zero_grad", "clip", "update", "between_steps")
MATMUL_OP = re.compile(
    r"aten::(mm|addmm|bmm|baddbmm|addbmm|matmul|linear|mv|addmv|dot|einsum|_?scaled_dot_product\w*"
    r"|_?\w*flash_attention\w*|_?\w*convolution\w*|conv\dd)$"
)
PROFILED_STEPS = 2


def matmul_gflops(sizes: tuple[int, ...] = (512, 1024), repeats: int = 5, min_seconds: float = 0.05) -> dict:
    """Best float32 ``a @ b`` rate per matrix size (GFLOP/s), each repeat running for at least ``min_seconds``."""
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        rates = []
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < min_seconds or calls == 0:
                a @ b
                calls += 1
            rates.append(2 * n**3 * calls / elapsed / 1e9)
        best[n] = max(rates)
    return best


class TimedLoader:
    """The training DataLoader, adding the time of creating its iterator and of every ``next()`` to ``clock.data``;
    every other attribute (sampler, batch size, length) is the loader's."""

    def __init__(self, loader, clock: StepClock) -> None:
        self.loader, self.clock = loader, clock

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name in ("loader", "clock"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        start = time.perf_counter()
        for batch in self.loader:  # iter() and every next()
            self.clock.data += time.perf_counter() - start
            yield batch
            start = time.perf_counter()


class StepClock(Callback):
    """Timestamps of Lightning's hooks, of the task model's forward and of the task's ``log_train``,
    ``configure_gradient_clipping`` and optimiser step, turned into phase times per step (see the module doc)."""

    def __init__(self, task: PerceiverTask, warmup: int, steps: int) -> None:
        self.task, self.warmup, self.steps = task, warmup, steps
        self.step, self.data, self.last_end, self.t = 0, 0.0, 0.0, {}
        self.rows: list[dict[str, float]] = []
        self.flops, self.batch_size = None, None
        self.ops: dict[str, list[float]] = {}
        self.window = None  # the FLOP counter or profiler running over the current forward+backward
        task.model.register_forward_pre_hook(self._forward_start)
        for name, key in (("log_train", "log"), ("configure_gradient_clipping", "clip")):
            self._time_method(name, key)

    def role(self) -> str:
        if self.step < self.warmup:
            return "warmup"
        if self.step == self.warmup:
            return "flops"
        return "timed" if self.step <= self.warmup + self.steps else "profile"

    def _time_method(self, name: str, key: str) -> None:
        original = getattr(self.task, name, None)
        if original is None:
            return

        def timed(*args, **kwargs):
            start = time.perf_counter()
            self.t.setdefault(f"{key}_start", start)
            try:
                return original(*args, **kwargs)
            finally:
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - start

        setattr(self.task, name, timed)  # an instance attribute: Lightning looks hooks up on the instance

    def _forward_start(self, module, args) -> None:
        if "forward_start" in self.t:
            return
        self.t["forward_start"] = time.perf_counter()
        role = self.role()
        if role == "flops":
            self.window = contextlib.ExitStack()
            self.window.enter_context(sdpa_kernel(SDPBackend.MATH))
            self.counter = self.window.enter_context(FlopCounterMode(display=False))
        elif role == "profile":
            self.window = profile(activities=[ProfilerActivity.CPU])
            self.window.start()

    def _close_window(self) -> None:
        if isinstance(self.window, contextlib.ExitStack):
            self.window.close()
            self.flops = self.counter.get_total_flops()
        elif self.window is not None:
            self.window.stop()
            for event in self.window.key_averages():
                total = self.ops.setdefault(event.key, [0.0, 0])
                total[0] += event.self_cpu_time_total / 1e6
                total[1] += event.count
        self.window = None

    def _mark(self, key: str) -> None:
        self.t.setdefault(key, time.perf_counter())

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].register_step_post_hook(lambda *_: self._mark("update_end"))
        self.last_end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.t = {"start": time.perf_counter(), "prev": self.last_end, "data": self.data}
        self.data = 0.0
        if self.batch_size is None:
            self.batch_size = first_dim(batch)

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        self._mark("zero_start")

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._mark("backward_start")

    def on_after_backward(self, trainer, pl_module) -> None:
        self._mark("backward_end")
        self._close_window()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._mark("optimizer_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t = self.t
        t["end"] = self.last_end = time.perf_counter()
        if self.role() == "timed":
            forward_end = t.get("log_start", t.get("zero_start", t["backward_start"]))
            clip, zero_grad = t.get("clip", 0.0), t["backward_start"] - t.get("zero_start", t["backward_start"])
            update = t.get("update_end", t["end"]) - t["optimizer_start"] - clip
            row = dict(step=t["end"] - t["prev"], data=t["data"], augment=t["forward_start"] - t["start"])
            row.update(forward=forward_end - t["forward_start"], backward=t["backward_end"] - t["backward_start"])
            row.update(optimiser=zero_grad + clip + update, log=t.get("log", 0.0), zero_grad=zero_grad, clip=clip)
            row.update(update=update, between_steps=t["start"] - t["prev"] - t["data"])
            row["other"] = row["step"] - sum(row[k] for k in PHASES[1:-1])
            row["fwd_bwd"] = row["forward"] + row["backward"]
            self.rows.append(row)
        self.step += 1


def first_dim(batch) -> int | None:
    """The leading dimension of the first tensor in a (nested) batch."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    values = batch.values() if hasattr(batch, "values") else batch if isinstance(batch, (list, tuple)) else ()
    return next((n for n in map(first_dim, values) if n is not None), None)


def build(config: Path, overrides: list[str], max_steps: int, root: str):
    """Task module, data module and trainer as ``perceiverio fit --config config`` builds them, set up for a
    profile of ``max_steps`` steps (see the module doc)."""
    forced = (
        f"max_steps={max_steps} max_epochs=-1 limit_val_batches=0 num_sanity_val_steps=0 enable_progress_bar=false "
        f"enable_model_summary=false enable_checkpointing=false accelerator=cpu devices=1 default_root_dir={root}"
    )
    args = ["--config", str(config), *overrides, *(f"--trainer.{option}" for option in forced.split())]
    saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it is given args beside a command line
    try:
        cli = LightningCLI(
            PerceiverTask, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            seed_everything_default=0, save_config_callback=None, run=False, args=args,
            parser_kwargs={"exit_on_error": False},
        )  # fmt: skip
    finally:
        sys.argv = saved
    trainer = cli.trainer
    loggers = []
    for logger in trainer.loggers:  # the same logger classes, writing into the temporary folder
        with contextlib.suppress(TypeError):
            loggers.append(type(logger)(save_dir=root, name=logger.name))
    trainer.loggers = loggers
    return cli.model, cli.datamodule, trainer


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = (*PHASES, *DETAILS)
    return {
        "median_ms": {k: 1e3 * statistics.median(r[k] for r in rows) for k in keys},
        "mean_ms": {k: 1e3 * statistics.fmean(r[k] for r in rows) for k in keys},
    }


def profile_recipe(config: Path, overrides: list[str], steps: int, warmup: int) -> dict:
    """Build the recipe, run ``warmup + 1 + steps + 2`` Lightning training steps, return the measurements."""
    with tempfile.TemporaryDirectory(prefix="profile_recipes_") as root:
        task, data, trainer = build(config, overrides, warmup + 1 + steps + PROFILED_STEPS, root)
        clock = StepClock(task, warmup, steps)
        trainer.callbacks.append(clock)
        make_loader = data.train_dataloader
        data.train_dataloader = lambda: TimedLoader(make_loader(), clock)
        before = matmul_gflops()
        trainer.fit(task, datamodule=data)
        after = matmul_gflops()
    if len(clock.rows) < steps:
        raise RuntimeError(f"only {len(clock.rows)} of {steps} timed steps ran (is the training set that small?)")
    result = dict(config=str(config), overrides=overrides, task=type(task).__name__, batch=clock.batch_size)
    result.update(params=sum(p.numel() for p in task.parameters()), threads=torch.get_num_threads())
    result.update(steps=steps, warmup=warmup, **summarise(clock.rows))
    result["steps_ms"] = [{k: 1e3 * v for k, v in row.items()} for row in clock.rows]
    med, flops = result["median_ms"], clock.flops or 0
    result.update(gflop_per_step=flops / 1e9, gflops_fwd_bwd=flops / med["fwd_bwd"] / 1e6 if med["fwd_bwd"] else 0.0)
    result["gflops_step"] = flops / med["step"] / 1e6
    result["matmul_gflops_before"] = {str(n): rate for n, rate in before.items()}
    result["matmul_gflops_after"] = {str(n): rate for n, rate in after.items()}
    result["matmul_gflops"] = reference = (max(before.values()) + max(after.values())) / 2
    result.update(ratio_fwd_bwd=result["gflops_fwd_bwd"] / reference, ratio_step=result["gflops_step"] / reference)
    total = sum(s for s, _ in clock.ops.values()) or float("nan")  # self CPU seconds over the profiled windows
    result["matmul_share"] = sum(s for name, (s, _) in clock.ops.items() if MATMUL_OP.match(name)) / total
    aten = sum(n for name, (_, n) in clock.ops.items() if name.startswith("aten::"))
    result["aten_ops_per_step"] = aten / PROFILED_STEPS
    ranked = sorted(clock.ops.items(), key=lambda kv: -kv[1][0])[:12]
    result["top_ops"] = [
        dict(op=k, self_ms_per_step=1e3 * s / PROFILED_STEPS, share=s / total, calls_per_step=n / PROFILED_STEPS)
        for k, (s, n) in ranked
    ]
    return result


def report(r: dict) -> str:
    med, mean = r["median_ms"], r["mean_ms"]
    lines = [
        f"== {r['config']} {' '.join(r['overrides'])}".rstrip(),
        f"{r['task']}, batch {r['batch']}, {r['params'] / 1e6:.2f}M parameters, {r['threads']} threads, "
        f"{r['steps']} timed steps after {r['warmup']} warm-up",
        f"{'phase':<12}{'median ms':>11}{'mean ms':>10}{'of step':>9}",
    ]
    for k in PHASES:
        lines.append(f"{k:<12}{med[k]:>11.2f}{mean[k]:>10.2f}{med[k] / med['step']:>9.0%}")
    lines += [
        f"  optimiser = zero_grad {med['zero_grad']:.2f} + clip {med['clip']:.2f} + update {med['update']:.2f} ms;"
        f" Lightning between steps (not data) {med['between_steps']:.2f} ms",
        f"FLOPs: {r['gflop_per_step']:.3f} GFLOP/step (forward+backward); achieved {r['gflops_fwd_bwd']:.1f} GFLOP/s "
        f"over forward+backward, {r['gflops_step']:.1f} over the step",
        "matmul float32 GFLOP/s: before "
        + ", ".join(f"{n}²: {v:.1f}" for n, v in r["matmul_gflops_before"].items())
        + "; after "
        + ", ".join(f"{n}²: {v:.1f}" for n, v in r["matmul_gflops_after"].items())
        + f"; reference {r['matmul_gflops']:.1f}",
        f"ratio to matmul: forward+backward {r['ratio_fwd_bwd']:.2f}, step {r['ratio_step']:.2f} (target 0.50)",
        f"forward+backward profile ({PROFILED_STEPS} steps, self CPU): matmul-like {r['matmul_share']:.0%}, "
        f"{r['aten_ops_per_step']:.0f} aten ops/step",
    ]
    lines += [
        f"  {o['op']:<56}{o['self_ms_per_step']:>9.2f} ms{o['share']:>6.0%}{o['calls_per_step']:>8.0f} calls"
        for o in r["top_ops"]
    ]
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    head = (
        "recipe", "batch", "params", "step ms", "data ms", "augment ms", "forward ms", "backward ms", "optimiser ms",
        "log ms", "other ms", "GFLOP/step", "GFLOP/s fwd+bwd", "GFLOP/s step", "matmul GFLOP/s", "ratio fwd+bwd",
        "ratio step", "matmul share", "top op",
    )  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        med, top = r["median_ms"], r["top_ops"][0] if r["top_ops"] else {"op": "-", "share": 0.0}
        rates = (r[k] for k in ("gflop_per_step", "gflops_fwd_bwd", "gflops_step", "matmul_gflops"))
        cells = [
            Path(r["config"]).stem + "".join(" " + o for o in r["overrides"]),
            str(r["batch"]),
            f"{r['params'] / 1e6:.2f}M",
            *(f"{med[k]:.1f}" for k in PHASES),
            *(f"{v:.3f}" if i == 0 else f"{v:.1f}" for i, v in enumerate(rates)),
            f"{r['ratio_fwd_bwd']:.2f}",
            f"{r['ratio_step']:.2f}",
            f"{r['matmul_share']:.0%}",
            f"{top['op']} ({top['share']:.0%})",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "configs", nargs="*", type=Path, default=[REPO / "configs" / f"{name}.yaml" for name in RECIPES]
    )
    parser.add_argument(
        "--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="perceiverio fit options for every config, without the leading --: data.path=FOLDER",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--markdown", action="store_true", help="print one table of all recipes at the end")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|log_every_n_steps|LeafSpec).*")
    overrides = [o if o.startswith("--") else "--" + o for o in args.override]
    results, failed = [], []
    for config in args.configs:
        try:
            results.append(profile_recipe(config, overrides, args.steps, args.warmup))
            gc.collect()  # the recipe's model, data and trainer
        except Exception as e:  # one broken recipe should not stop the others
            failed.append(config)
            why = "\n    ".join(line.strip() for line in str(e).strip().splitlines()[:8])  # jsonargparse nests causes
            print(f"== {config}: failed: {type(e).__name__}: {why}", file=sys.stderr)
            continue
        print(report(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown and results:
        print(markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
