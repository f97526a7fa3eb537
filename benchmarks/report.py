"""Render ``benchmarks/results/bench.json`` (written by ``bench.py``) into docs/benchmarks.md and a PNG plot.

    python benchmarks/report.py [--json benchmarks/results/bench.json] [--docs docs/benchmarks.md]

Everything between the ``bench:begin``/``bench:end`` markers of the docs page is regenerated; the prose around it
is kept.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NAMES = {"ours": "perceiverio", "hf": "transformers", "lucidrains": "perceiver-pytorch"}
CASES = {
    "mlm": "byte MLM, 2 × 2048 bytes",
    "imagenet": "ImageNet-Fourier, 224²",
    "flow": "optical flow, 368×496",
    "kinetics": "Kinetics autoencoder (forward: full reconstruction; train: the paper's subsampled decoding)",
}


def _variant(r: dict) -> str:
    return f"{r['precision']}{' compiled' if r['compile'] else ''}"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.3g} s" if s >= 0.1 else f"{s * 1e3:.3g} ms"


def _gib(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} GiB"


def _rate(r: dict) -> tuple[str, str]:
    if not r.get("flops") or not r.get("median_s"):
        return "–", "–"
    rate = r["flops"] / r["median_s"]
    return f"{rate / 1e9:.0f}", f"{100 * rate / r['matmul_flops']:.0f}%"


def preset_table(records: list[dict]) -> str:
    rows = [
        "| configuration | mode | precision | implementation | time (median) | peak RSS | peak tensors | GFLOP | "
        "GFLOP/s | of matmul peak | speed vs transformers | RSS vs transformers | tensors vs transformers | "
        "max rel. diff vs transformers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_cell: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if r["case"] in CASES:
            by_cell.setdefault((r["case"], r["mode"], r["precision"], r["compile"]), {})[r["impl"]] = r
    order = list(CASES)
    for key in sorted(by_cell, key=lambda k: (order.index(k[0]), k[1], k[2], k[3])):
        cell = by_cell[key]
        hf = cell.get("hf", {})
        for impl in ("ours", "hf"):
            r = cell.get(impl)
            if r is None:
                continue
            if "error" in r:
                rows.append(
                    f"| {CASES[key[0]]} | {key[1]} | {_variant(r)} | {NAMES[impl]} | {r['error']} | | | | | | | | | |"
                )
                continue
            gflops, frac = _rate(r)
            speed = mem = tmem = diff = "–"
            if impl == "ours" and hf.get("median_s") and r.get("median_s"):
                speed = f"{hf['median_s'] / r['median_s']:.2f}×"
                mem = f"{r['peak_gib'] / hf['peak_gib']:.2f}×"
                if r.get("tensor_peak_gib") and hf.get("tensor_peak_gib"):
                    tmem = f"{r['tensor_peak_gib'] / hf['tensor_peak_gib']:.2f}×"
            if r.get("max_rel_diff_vs_hf") is not None:
                diff = f"{r['max_rel_diff_vs_hf']:.1e}"
            note = r.get("note") or ""
            if note.startswith("training ") and not key[1].startswith("train"):
                note = ""
            if note.startswith("forward: "):
                note = note.removeprefix("forward: ") if key[1] == "forward" else ""
            note = f" ({note})" if note else ""
            rows.append(
                f"| {CASES[key[0]]} | {key[1]} | {_variant(r)} | {NAMES[impl]}{note} | "
                f"{_fmt_s(r.get('median_s'))} | {r['peak_gib']:.2f} GiB | {_gib(r.get('tensor_peak_gib'))} | "
                f"{(r.get('flops') or 0) / 1e9:.0f} | {gflops} | {frac} | {speed} | {mem} | {tmem} | {diff} |"
            )
    return "\n".join(rows)


def sweep_table(records: list[dict], case: str) -> str:
    letter = "M" if case == "sweep_m" else "O"
    cells = sorted({(r["mode"], r["precision"], r["compile"]) for r in records if r["case"] == case})
    out = []
    for mode, precision, compiled in cells:
        rs = [
            r
            for r in records
            if r["case"] == case and r["mode"] == mode and r["precision"] == precision and r["compile"] == compiled
        ]
        sizes = sorted({r["size"] for r in rs})
        impls = [i for i in ("ours", "hf", "lucidrains") if any(r["impl"] == i for r in rs)]
        head = " | ".join(f"{NAMES[i]} time | per element | peak" for i in impls)
        what = "forward" if mode == "forward" else "training step (forward + backward + AdamW)"
        out.append(f"{precision}{' compiled' if compiled else ''}, {what}:\n")
        out.append(f"| {letter} | {head} |")
        out.append("|---" * (1 + 3 * len(impls)) + "|")
        for size in sizes:
            cols = []
            for impl in impls:
                r = next((x for x in rs if x["impl"] == impl and x["size"] == size), None)
                if r is None or "error" in r or not r.get("median_s"):
                    cols.append(f"{(r or {}).get('error', '–')} | | ")
                    continue
                cols.append(f"{_fmt_s(r['median_s'])} | {r['median_s'] / size * 1e9:.0f} ns | {r['peak_gib']:.2f} GiB")
            out.append(f"| {size:,} | " + " | ".join(cols) + " |")
        out.append("")
    return "\n".join(out)


def _get(records: list[dict], **match) -> dict | None:
    for r in records:
        if all(r.get(k) == v for k, v in match.items()) and r.get("median_s"):
            return r
    return None


def targets(records: list[dict]) -> str:
    """The issue's targets, computed from the records: measured value and whether it is met."""
    rows = ["| target | measured | met |", "|---|---|---|"]

    def row(what: str, value: str, ok: bool | None) -> None:
        rows.append(f"| {what} | {value} | {'yes' if ok else 'no' if ok is not None else '–'} |")

    for case in ("mlm", "imagenet"):
        ours = _get(records, case=case, impl="ours", mode="forward", precision="fp32", compile=False)
        hf = _get(records, case=case, impl="hf", mode="forward", precision="fp32", compile=False)
        if ours and hf and ours.get("flops"):
            frac = ours["flops"] / ours["median_s"] / ours["matmul_flops"]
            row(f"{CASES[case]}, fp32 forward: ≥ 85% of matmul throughput", f"{100 * frac:.0f}%", frac >= 0.85)
            speed = hf["median_s"] / ours["median_s"]
            row(f"{CASES[case]}, fp32 forward: ≥ 1.1× transformers", f"{speed:.2f}×", speed >= 1.1)
    for case in ("mlm", "imagenet", "flow"):
        fp32 = _get(records, case=case, impl="ours", mode="forward", precision="fp32", compile=False)
        bf16 = _get(records, case=case, impl="ours", mode="forward", precision="bf16", compile=False)
        if fp32 and bf16:
            gain = fp32["median_s"] / bf16["median_s"]
            row(f"{CASES[case]}: bf16 autocast forward ≥ 1.6× our fp32", f"{gain:.2f}×", gain >= 1.6)
    for case, mode, label, speed_target, mem_target in (
        ("mlm", "train", "MLM training step, batch 2", 1.3, 0.7),
        (
            "mlm",
            "train_lean",
            "MLM training step, batch 2, lean (update in backward; ours also checkpointed)",
            1.3,
            0.7,
        ),
        ("flow", "forward", "flow 368×496", 2.0, 0.4),
    ):
        ours = _get(records, case=case, impl="ours", mode=mode, precision="fp32", compile=False)
        hf = _get(records, case=case, impl="hf", mode=mode, precision="fp32", compile=False)
        if ours and hf:
            speed, mem = hf["median_s"] / ours["median_s"], ours["peak_gib"] / hf["peak_gib"]
            row(f"{label}: ≥ {speed_target:g}× transformers' throughput", f"{speed:.2f}×", speed >= speed_target)
            row(
                f"{label}: ≤ {mem_target:g}× transformers' peak memory (RSS)",
                f"{mem:.2f}× ({ours['peak_gib']:.2f} vs {hf['peak_gib']:.2f} GiB)",
                mem <= mem_target,
            )
            if ours.get("tensor_peak_gib") and hf.get("tensor_peak_gib"):
                t = ours["tensor_peak_gib"] / hf["tensor_peak_gib"]
                row(
                    f"{label}: ≤ {mem_target:g}× transformers' peak memory (live tensors)",
                    f"{t:.2f}× ({ours['tensor_peak_gib']:.2f} vs {hf['tensor_peak_gib']:.2f} GiB)",
                    t <= mem_target,
                )
    sweep = sorted(
        (
            r
            for r in records
            if r["case"] == "sweep_m"
            and r["impl"] == "ours"
            and r["precision"] == "fp32"
            and r["mode"] == "forward"
            and not r["compile"]
            and r.get("median_s")
            and 16_384 <= r["size"] <= 2**20
        ),
        key=lambda r: r["size"],
    )
    if len(sweep) >= 2:
        per = [r["median_s"] / r["size"] for r in sweep]
        mid = sorted(per)[len(per) // 2]
        spread = max(abs(p / mid - 1) for p in per)
        row(
            "time per input element flat within ±15% from M = 16k to 1M",
            " / ".join(f"{p * 1e9:.0f}" for p in per) + f" ns (±{100 * spread:.0f}% around the median)",
            spread <= 0.15,
        )
        slope = [(b["peak_gib"] - a["peak_gib"]) / (b["size"] - a["size"]) * 2**30 for a, b in zip(sweep, sweep[1:])]
        row("peak memory linear in M", "bytes per added element: " + " / ".join(f"{s:.0f}" for s in slope), None)
        top = sweep[-1]
        if top["size"] == 2**20:
            row("1M-element input encodes in under 8 GB", f"{top['peak_gib']:.2f} GiB", top["peak_gib"] < 8)
    kin = _get(records, case="kinetics", impl="ours", mode="forward", precision="fp32", compile=False)
    if kin:
        row(
            "full Kinetics reconstruction under 4 GB peak",
            f"{kin['peak_gib']:.2f} GiB in {kin['median_s']:.0f} s",
            kin["peak_gib"] < 4,
        )
    return "\n".join(rows)


def plot(records: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, case in enumerate(("sweep_m", "sweep_o")):
        letter = "M (input elements)" if case == "sweep_m" else "O (output queries)"
        for mode, style in (("forward", "-"), ("train", "--")):
            for color, impl in enumerate(("ours", "hf", "lucidrains")):
                rs = sorted(
                    (
                        r
                        for r in records
                        if r["case"] == case
                        and r["impl"] == impl
                        and r["mode"] == mode
                        and r["precision"] == "fp32"
                        and not r["compile"]
                        and r.get("median_s")
                    ),
                    key=lambda r: r["size"],
                )
                if not rs:
                    continue
                xs = [r["size"] for r in rs]
                label = f"{NAMES[impl]}, {'forward' if mode == 'forward' else 'train step'}"
                axes[0][col].plot(xs, [r["median_s"] for r in rs], style, marker="o", color=f"C{color}", label=label)
                axes[1][col].plot(xs, [r["peak_gib"] for r in rs], style, marker="o", color=f"C{color}", label=label)
        for row, ylabel in ((0, "time (s)"), (1, "peak memory, RSS (GiB)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(letter)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(
        "Perceiver IO, fp32, small latent array: forward and training-step time and peak memory against M and O"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def render(data: dict, png: Path, docs_dir: Path) -> str:
    m = data["machine"]
    records = data["records"]
    ranges = {}
    for r in records:
        if r.get("matmul_flops"):
            ranges.setdefault(r["precision"], []).append(r["matmul_flops"] / 1e9)
    peaks = ", ".join(f"{k} {min(v):.0f}–{max(v):.0f} GFLOP/s" for k, v in sorted(ranges.items()))
    parts = [
        "### Targets (computed from the records below)",
        "",
        targets(records),
        "",
        f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, Python {m['python']}; measured "
        f"{m['date']}. Dense matmul throughput (`torch.mm`), measured within each cell: {peaks}.",
        "",
        "### Presets",
        "",
        preset_table(records),
        "",
    ]
    for case, title in (("sweep_m", "Input size M"), ("sweep_o", "Output queries O")):
        if any(r["case"] == case for r in records):
            parts += [f"### {title}", "", sweep_table(records, case)]
    if plot(records, png):
        parts += ["", f"![time and memory against M and O]({png.relative_to(docs_dir).as_posix()})"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=HERE / "results" / "bench.json")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    data = json.loads(args.json.read_text())
    block = render(data, args.docs.parent / "benchmarks.png", args.docs.parent)
    text = args.docs.read_text() if args.docs.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{block}\n{END}", text, flags=re.S)
    args.docs.write_text(text)
    print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
