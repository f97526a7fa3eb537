"""How fast the matrix products of each recipe run at their own shapes, against the square-matmul reference.

    python benchmarks/matmul_shapes.py                     # the five recipes of profile_recipes.py
    python benchmarks/matmul_shapes.py configs/sst2.yaml --json sst2-shapes.json --markdown

`benchmarks/profile_recipes.py` compares each recipe's FLOP rate with float32 ``a @ b`` of 512² and 1024² matrices.
This script asks how much of the gap is in the products themselves: the recipes multiply narrow matrices (128 or
192 channels, a few hundred rows per example), which no CPU BLAS runs at the square rate.

What runs. Each config is built as ``perceiverio fit --config X`` builds it (``profile_recipes.build``). One
training batch goes through the task's ``training_step`` and ``backward`` under a dispatch mode that records every
matrix-like operator (the ``MATMUL_OP`` set of profile_recipes.py: mm, addmm, bmm, linear, the attention kernels,
convolutions) with its arguments' shapes, strides and dtypes. Each distinct call is then replayed alone on random
tensors of the same layout, in the same process and threads: one untimed call, then the best of ``repeats`` timings
of at least ``min_seconds`` each. Its FLOPs come from ``torch.utils.flop_counter`` (zero for operators the counter
does not know; those are listed and left out of the rate).

Columns: GFLOP (counted) of the matrix operators in one forward+backward; their isolated time (each call's best
time × its count); the rate that gives (own-shape GFLOP/s); the square reference measured right before and after;
and their ratio: the most a step made only of these products could reach against the reference. The JSON lists
every distinct call with its count, time and rate.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from profile_recipes import MATMUL_OP, RECIPES, REPO, build, matmul_gflops
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class TensorSpec:
    """The layout of a recorded tensor argument (values are not kept)."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    def make(self) -> torch.Tensor:
        """A tensor of this layout: standard normal floats, zeros otherwise."""
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride) if n > 0)
        if self.dtype.is_floating_point:
            storage = torch.randn(extent, dtype=self.dtype)
        else:
            storage = torch.zeros(extent, dtype=self.dtype)
        return storage.as_strided(self.shape, self.stride)


def _spec(x):
    return TensorSpec(tuple(x.shape), tuple(x.stride()), x.dtype) if isinstance(x, torch.Tensor) else x


def _make(x):
    return x.make() if isinstance(x, TensorSpec) else x


class MatmulRecorder(TorchDispatchMode):
    """Counts every matrix-like operator call by operator and argument layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list] = {}  # repr -> [operator, (args, kwargs) as specs, count]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if MATMUL_OP.match(func._schema.name):
            specs = tree_map(_spec, (args, kwargs))
            self.calls.setdefault(f"{func} {specs!r}", [func, specs, 0])[2] += 1
        return func(*args, **kwargs)


def record(step: Callable[[], torch.Tensor]) -> list[tuple[object, tuple, int]]:
    """``[(operator, (args, kwargs) as specs, count)]`` of the matrix operators in ``step()`` and its backward."""
    recorder = MatmulRecorder()
    with recorder:
        loss = step()
        loss.backward()
    return [tuple(call) for call in recorder.calls.values()]


def time_call(func, specs, repeats: int = 3, min_seconds: float = 0.02) -> tuple[float, float]:
    """``(best seconds per call, FLOPs per call)`` of ``func`` on fresh random tensors of the recorded layouts."""
    args, kwargs = tree_map(_make, specs)
    with FlopCounterMode(display=False) as counter:
        func(*args, **kwargs)  # also the untimed first call
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds or calls == 0:
            func(*args, **kwargs)
            calls += 1
        best = min(best, elapsed / calls)
    return best, float(counter.get_total_flops())


def own_shape_rate(calls: list[tuple[object, tuple, int]], repeats: int = 3, min_seconds: float = 0.02) -> dict:
    """Times every recorded call; the FLOP-weighted rate of the counted ones and a row per distinct call."""
    rows = []
    for func, specs, count in calls:
        seconds, flops = time_call(func, specs, repeats, min_seconds)
        shapes = [list(s.shape) for s in specs[0] if isinstance(s, TensorSpec)]
        rows.append(dict(op=func._schema.name, shapes=shapes, count=count, ms=1e3 * seconds, gflop=flops / 1e9))
    counted = [r for r in rows if r["gflop"] > 0]
    total_gflop = sum(r["gflop"] * r["count"] for r in counted)
    total_s = sum(r["ms"] * r["count"] for r in counted) / 1e3
    for r in rows:
        r["gflops"] = r["gflop"] / r["ms"] * 1e3 if r["gflop"] else 0.0
    rows.sort(key=lambda r: -r["ms"] * r["count"])
    return dict(
        gflop=total_gflop,
        seconds=total_s,
        gflops=total_gflop / total_s if total_s else 0.0,
        uncounted=sorted({r["op"] for r in rows if not r["gflop"]}),
        calls=rows,
    )


def measure(config: Path, overrides: list[str]) -> dict:
    """Record one training step of ``config`` and time its matrix products alone."""
    with tempfile.TemporaryDirectory(prefix="matmul_shapes_") as root:
        task, data, _ = build(config, overrides, 1, root)
        data.prepare_data()
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        task.train()  # no trainer attached: the step's self.log calls return without logging
        calls = record(lambda: task.training_step(batch, 0))
    before = matmul_gflops()
    result = own_shape_rate(calls)
    after = matmul_gflops()
    reference = (max(before.values()) + max(after.values())) / 2
    result.update(config=str(config), threads=torch.get_num_threads(), reference_gflops=reference)
    result["ratio"] = result["gflops"] / reference
    return result


def report(r: dict, top: int = 6) -> str:
    lines = [
        f"== {r['config']} ({r['threads']} threads)",
        f"matrix operators of one forward+backward: {r['gflop']:.2f} GFLOP in {1e3 * r['seconds']:.0f} ms alone "
        f"= {r['gflops']:.1f} GFLOP/s at their own shapes; square reference {r['reference_gflops']:.1f}; "
        f"ratio {r['ratio']:.2f}",
    ]
    if r["uncounted"]:
        lines.append(f"not counted (no FLOP formula): {', '.join(r['uncounted'])}")
    for c in r["calls"][:top]:
        lines.append(
            f"  {c['op']:<45} {c['shapes']!s:<40} ×{c['count']:<3} {c['ms']:7.2f} ms  {c['gflops']:6.1f} GFLOP/s"
        )
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    lines = [
        "| recipe | GFLOP in matrix ops | ms alone | GFLOP/s at own shapes | square GFLOP/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {Path(r['config']).stem} | {r['gflop']:.2f} | {1e3 * r['seconds']:.0f} | {r['gflops']:.1f} | "
            f"{r['reference_gflops']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "configs", nargs="*", type=Path, default=[REPO / "configs" / f"{name}.yaml" for name in RECIPES]
    )
    parser.add_argument("--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--markdown", action="store_true", help="print one table of all recipes at the end")
    args = parser.parse_args(argv)
    overrides = [o if o.startswith("--") else "--" + o for o in args.override]
    warnings.filterwarnings("ignore", message=r".*(self.log\(\)|does not have many workers|LeafSpec).*")
    results = []
    for config in args.configs:
        results.append(measure(config, overrides))
        gc.collect()
        print(report(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
