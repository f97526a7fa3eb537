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
CASES = {"mlm": "byte MLM, 2 × 2048 bytes", "imagenet": "ImageNet-Fourier, 224²", "flow": "optical flow, 368×496",
         "kinetics": "Kinetics autoencoder, full reconstruction"}


def _variant(r: dict) -> str:
    return f"{r['precision']}{' compiled' if r['compile'] else ''}"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.3g} s" if s >= 0.1 else f"{s * 1e3:.3g} ms"


def _rate(r: dict) -> tuple[str, str]:
    if not r.get("flops") or not r.get("median_s"):
        return "–", "–"
    rate = r["flops"] / r["median_s"]
    return f"{rate / 1e9:.0f}", f"{100 * rate / r['matmul_flops']:.0f}%"


def preset_table(records: list[dict]) -> str:
    rows = ["| configuration | mode | precision | implementation | time (median) | peak memory | GFLOP | GFLOP/s | "
            "of matmul peak | speed vs transformers | memory vs transformers | max rel. diff vs transformers |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
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
                rows.append(f"| {CASES[key[0]]} | {key[1]} | {_variant(r)} | {NAMES[impl]} | {r['error']} |"
                            " | | | | | | |")
                continue
            gflops, frac = _rate(r)
            speed = mem = diff = "–"
            if impl == "ours" and hf.get("median_s") and r.get("median_s"):
                speed = f"{hf['median_s'] / r['median_s']:.2f}×"
                mem = f"{r['peak_gib'] / hf['peak_gib']:.2f}×"
            if r.get("max_rel_diff_vs_hf") is not None:
                diff = f"{r['max_rel_diff_vs_hf']:.1e}"
            note = f" ({r['note']})" if r.get("note") else ""
            rows.append(f"| {CASES[key[0]]} | {key[1]} | {_variant(r)} | {NAMES[impl]}{note} | "
                        f"{_fmt_s(r.get('median_s'))} | {r['peak_gib']:.2f} GiB | "
                        f"{(r.get('flops') or 0) / 1e9:.0f} | {gflops} | {frac} | {speed} | {mem} | {diff} |")
    return "\n".join(rows)


def sweep_table(records: list[dict], case: str) -> str:
    letter = "M" if case == "sweep_m" else "O"
    cells = sorted({(r["precision"], r["compile"]) for r in records if r["case"] == case})
    out = []
    for precision, compiled in cells:
        rs = [r for r in records if r["case"] == case and r["precision"] == precision and r["compile"] == compiled]
        sizes = sorted({r["size"] for r in rs})
        impls = [i for i in ("ours", "hf", "lucidrains") if any(r["impl"] == i for r in rs)]
        head = " | ".join(f"{NAMES[i]} time | per element | peak" for i in impls)
        out.append(f"{precision}{' compiled' if compiled else ''}, forward:\n")
        out.append(f"| {letter} | {head} |")
        out.append("|---" * (1 + 3 * len(impls)) + "|")
        for size in sizes:
            cols = []
            for impl in impls:
                r = next((x for x in rs if x["impl"] == impl and x["size"] == size), None)
                if r is None or "error" in r or not r.get("median_s"):
                    cols.append(f"{(r or {}).get('error', '–')} | | ")
                    continue
                cols.append(f"{_fmt_s(r['median_s'])} | {r['median_s'] / size * 1e9:.0f} ns | "
                            f"{r['peak_gib']:.2f} GiB")
            out.append(f"| {size:,} | " + " | ".join(cols) + " |")
        out.append("")
    return "\n".join(out)


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
        for impl in ("ours", "hf", "lucidrains"):
            rs = sorted((r for r in records if r["case"] == case and r["impl"] == impl and r["precision"] == "fp32"
                         and not r["compile"] and r.get("median_s")), key=lambda r: r["size"])
            if not rs:
                continue
            xs = [r["size"] for r in rs]
            axes[0][col].plot(xs, [r["median_s"] for r in rs], marker="o", label=NAMES[impl])
            axes[1][col].plot(xs, [r["peak_gib"] for r in rs], marker="o", label=NAMES[impl])
        for row, ylabel in ((0, "forward time (s)"), (1, "peak memory (GiB)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(letter)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle("Perceiver IO forward, fp32, small latent array: time and peak memory against M and O")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def render(data: dict, png: Path, docs_dir: Path) -> str:
    m = data["machine"]
    records = data["records"]
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in m["matmul_flops"].items())
    parts = [
        f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, Python {m['python']}; measured "
        f"{m['date']}. Dense matmul throughput of the same run (`torch.mm`, 4096²): {peaks}.",
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
