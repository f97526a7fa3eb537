"""Time and peak memory of the released-size optical-flow model on one 368×496 frame pair (CPU, no_grad).

    python benchmarks/flow_memory.py                 # decoder chunks of 16384 queries and unchunked
    python benchmarks/flow_memory.py --chunks 16384 --no-docs

Each setting runs in a fresh Python process (so peak RSS, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, is that
run's alone; tracemalloc does not see torch's allocations). Weights are random (``OpticalFlowConfig.sintel()``):
the cost does not depend on them. Prints a Markdown table and, unless ``--no-docs``, writes it into docs/flow.md
between the ``flow-memory`` markers. A benchmark run by hand, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "flow.md"
BEGIN, END = "<!-- flow-memory:begin -->", "<!-- flow-memory:end -->"


def _rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def child(chunk: int | None, height: int, width: int, repeats: int) -> dict:
    import torch

    from perceiverio.tasks.flow import OpticalFlow, OpticalFlowConfig

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = OpticalFlow(OpticalFlowConfig.sintel(decoder_chunk_size=chunk)).eval()
    build_s = time.perf_counter() - t0
    frames = torch.rand(1, 2, 3, height, width) * 2 - 1
    rss_model = _rss_mib()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            flow = model(frames)
            times.append(time.perf_counter() - t0)
    assert flow.shape == (1, 2, height, width) and bool(torch.isfinite(flow).all())
    return dict(
        chunk=chunk,
        params=model.num_parameters(),
        build_s=build_s,
        times=times,
        rss_after_build_mib=rss_model,
        peak_rss_mib=_rss_mib(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


def run_fresh(chunk: int | None, height: int, width: int, repeats: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(chunk),
        "--size",
        str(height),
        str(width),
        "--repeats",
        str(repeats),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(results: list[dict], height: int, width: int) -> str:
    r0 = results[0]
    lines = [
        f"Measured by `benchmarks/flow_memory.py` on {time.strftime('%Y-%m-%d')}: `OpticalFlowConfig.sintel()` "
        f"({r0['params'] / 1e6:.2f}M parameters, random weights), one {height}×{width} frame pair, "
        f"{height * width:,} tokens/queries, CPU ({platform.processor() or platform.machine()}, "
        f"{r0['threads']} threads), torch {r0['torch']}, float32, `torch.no_grad()`, each row a fresh process.",
        "",
        "| decoder_chunk_size | forward time (s) | peak RSS (GiB) | RSS after building the model (GiB) |",
        "|---|---|---|---|",
    ]
    for r in results:
        t = " / ".join(f"{s:.1f}" for s in r["times"])
        lines.append(
            f"| {r['chunk'] if r['chunk'] is not None else 'None (all at once)'} | {t} | "
            f"{r['peak_rss_mib'] / 1024:.2f} | {r['rss_after_build_mib'] / 1024:.2f} |"
        )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOCS.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", nargs="+", default=["16384", "none"], help="decoder chunk sizes ('none': all)")
    parser.add_argument("--size", nargs=2, type=int, default=(368, 496), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=1, help="forward passes per process (the first is timed too)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/flow.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    h, w = args.size
    if args.child is not None:
        chunk = None if args.child.lower() == "none" else int(args.child)
        print(json.dumps(child(chunk, h, w, args.repeats)))
        return
    results = []
    for c in args.chunks:
        chunk = None if c.lower() == "none" else int(c)
        print(f"running decoder_chunk_size={chunk} ...", file=sys.stderr, flush=True)
        results.append(run_fresh(chunk, h, w, args.repeats))
    text = table(results, h, w)
    print(text)
    if not args.no_docs:
        write_docs(text)
        print(f"\nwritten to {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
