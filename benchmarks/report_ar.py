"""The Perceiver AR benchmark tables (case ``ar`` of ``bench.json``) and the issue's cost targets, written into
``docs/generation.md`` between the ``ar-bench`` markers (or printed with ``--print``).

    python benchmarks/bench.py --cases ar --precisions fp32 --reps 3
    python benchmarks/report_ar.py
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "generation.md"
PNG = HERE.parent / "docs" / "pictures" / "perceiver-ar-cost.png"
START, END = "<!-- ar-bench:start -->", "<!-- ar-bench:end -->"
IMPLS = ("ours", "lucidrains", "transformer")
NAMES = {"ours": "perceiverio", "lucidrains": "perceiver-ar-pytorch", "transformer": "decoder-only Transformer"}


def _table(records: list[dict]) -> dict[tuple[str, int, str], dict]:
    return {
        (r["mode"], r["size"], r["impl"]): r
        for r in records
        if r["case"] == "ar" and r["precision"] == "fp32" and not r["compile"] and "median_s" in r
    }


def _ms(r: dict | None) -> str:
    return "—" if r is None else f"{r['median_s'] * 1000:,.1f}"


def _ratio(a: dict | None, b: dict | None) -> float | None:
    return None if a is None or b is None else b["median_s"] / a["median_s"]


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}×"


def render(data: dict) -> str:
    t = _table(data["records"])
    sizes = sorted({size for _, size, _ in t})
    m = data.get("machine", {})
    lines = [
        f"Measured {m.get('date', '?')} on {m.get('cpu', '?')}, {m.get('threads', '?')} threads, torch "
        f"{m.get('torch', '?')}, float32, batch 1, median of the repetitions (`bench.py` method).",
        "",
        "Training step (forward, loss, backward, AdamW), ms, and peak memory (GiB: live tensors incl. weights, "
        "gradients and optimiser state / process RSS):",
        "",
        "| context L | ours | perceiver-ar-pytorch | Transformer | ours vs Transformer | ours vs perceiver-ar-pytorch "
        "| memory ours | memory perceiver-ar-pytorch | memory Transformer |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        row = [t.get(("train", s, i)) for i in IMPLS]
        mem = ["—" if r is None else f"{r['tensor_peak_gib']:.2f} / {r['peak_gib']:.2f}" for r in row]
        lines.append(
            f"| {s:,} | {' | '.join(_ms(r) for r in row)} | {_x(_ratio(row[0], row[2]))} | "
            f"{_x(_ratio(row[0], row[1]))} | {' | '.join(mem)} |"
        )
    lines += [
        "",
        "Scoring one window of L bytes (inference forward; = one generation step without a cache), ms:",
        "",
        "| context L | ours | perceiver-ar-pytorch | Transformer |",
        "|---:|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(f"| {s:,} | {' | '.join(_ms(t.get(('forward', s, i))) for i in IMPLS)} |")
    lines += [
        "",
        "Generation, ms per new byte after a prompt of L bytes (top-k 25 sampling; ours cached: 256 new bytes, the "
        "prompt's encoding and the strided re-encodings included):",
        "",
        "| context L | ours, cached | ours, uncached | cache speed-up | perceiver-ar-pytorch (no cache) "
        "| Transformer (no cache) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        cached, uncached = t.get(("generate", s, "ours")), t.get(("generate_uncached", s, "ours"))
        lines.append(
            f"| {s:,} | {_ms(cached)} | {_ms(uncached)} | {_x(_ratio(cached, uncached))} | "
            f"{_ms(t.get(('generate', s, 'lucidrains')))} | {_ms(t.get(('generate', s, 'transformer')))} |"
        )
    lines += ["", "Against the issue's cost targets:", ""] + targets(t, sizes)
    return "\n".join(lines)


def targets(t: dict, sizes: list[int]) -> list[str]:
    out = []
    speed = _ratio(t.get(("train", 4096, "ours")), t.get(("train", 4096, "transformer")))
    if speed is not None:
        out.append(
            f"- training step at 4,096, ≥ 4× the Transformer: **{speed:.1f}×** ({'met' if speed >= 4 else 'missed'})"
        )
    mem = [t.get(("train", s, "ours")) for s in sizes]
    if len(sizes) >= 3 and all(mem):
        growth = [
            (b["tensor_peak_gib"] - a["tensor_peak_gib"]) / (s1 - s0)
            for (a, s0), (b, s1) in zip(zip(mem, sizes), zip(mem[1:], sizes[1:]))
        ]
        out.append(
            "- memory linear in the context: live tensor peak grows by "
            + ", then ".join(f"{g * 2**30 / 1024:,.1f} KiB" for g in growth)
            + " per extra byte of context between successive sizes (constant: linear; quadratic would grow "
            + "with L)"
        )
    cache = _ratio(t.get(("generate", 4096, "ours")), t.get(("generate_uncached", 4096, "ours")))
    if cache is not None:
        out.append(
            f"- cached generation at 4,096, ≥ 10× uncached: **{cache:.1f}×** ({'met' if cache >= 10 else 'missed'})"
        )
    for mode, label in (("train", "training step"), ("forward", "forward"), ("generate", "generation per byte")):
        ratios = [(s, _ratio(t.get((mode, s, "ours")), t.get((mode, s, "lucidrains")))) for s in sizes]
        ratios = [(s, r) for s, r in ratios if r is not None]
        if ratios:
            text = ", ".join(f"{s:,}: {r:.2f}×" for s, r in ratios)
            verdict = "level or faster" if all(r >= 1 for _, r in ratios) else "slower somewhere"
            out.append(f"- {label} vs perceiver-ar-pytorch (its time / ours): {text} ({verdict})")
    return out


def plot(data: dict, path: Path) -> bool:
    """Training-step time, generation time per byte and live tensor peak of training against L (log-log)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = _table(data["records"])
    sizes = sorted({size for _, size, _ in t})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = (
        ("train", "training step (s)", lambda r: r["median_s"]),
        ("generate", "generation, s per new byte", lambda r: r["median_s"]),
        ("train", "training: live tensor peak (GiB)", lambda r: r["tensor_peak_gib"]),
    )
    for ax, (mode, ylabel, value) in zip(axes, panels):
        for color, impl in enumerate(IMPLS):
            pts = [(s, value(t[(mode, s, impl)])) for s in sizes if (mode, s, impl) in t]
            label = NAMES[impl] + (" (cached)" if mode == "generate" and impl == "ours" else "")
            if pts:
                ax.plot(*zip(*pts), marker="o", color=f"C{color}", label=label)
            if mode == "generate" and impl == "ours":
                pts = [
                    (s, t[("generate_uncached", s, impl)]["median_s"])
                    for s in sizes
                    if ("generate_uncached", s, impl) in t
                ]
                if pts:
                    ax.plot(*zip(*pts), "--", marker="o", color=f"C{color}", label=NAMES[impl] + " (uncached)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context L (bytes), 256 latents")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Perceiver AR against perceiver-ar-pytorch and a decoder-only Transformer (width 256, fp32, batch 1)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=HERE / "results" / "bench.json")
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument("--print", action="store_true", help="print the section instead of writing it into --doc")
    args = p.parse_args(argv)
    data = json.loads(args.json.read_text())
    section = render(data)
    if not args.print and plot(data, PNG):
        link = Path(os.path.relpath(PNG, args.doc.parent)).as_posix()
        section += f"\n\n![time and memory against the context]({link})"
    if args.print:
        print(section)
        return
    doc = args.doc.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{args.doc} has no {START} ... {END} markers")
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    tmp = args.doc.with_suffix(".tmp")
    tmp.write_text(f"{head}{START}\n{section}\n{END}{tail}")
    tmp.replace(args.doc)


if __name__ == "__main__":
    main()
