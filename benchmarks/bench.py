"""perceiverio against transformers and lucidrains' perceiver-pytorch: latency, training step, peak memory, FLOP/s.

    pip install -e '.[bench]'
    python benchmarks/bench.py                                   # the presets and the M/O sweeps (about an hour)
    python benchmarks/bench.py --cases mlm --modes forward,train --precisions fp32,bf16 --reps 5
    python benchmarks/bench.py --cases sweep_m --sizes 4096,65536,1048576 --impls ours,hf
    python benchmarks/bench.py --compile                         # adds torch.compile variants
    python benchmarks/bench.py --cases kinetics --impls ours --modes forward --compiled-only
    python benchmarks/bench.py --cases ar --precisions fp32 --reps 3 # Perceiver AR at context 1k/4k/16k
    python benchmarks/report.py                                  # docs/benchmarks.md + the plot from the JSON

Method. Every (configuration, mode, precision, compile) cell starts one fresh worker process per implementation;
the workers build their models one after another, warm up, and then take turns: repetition r of every
implementation runs before repetition r + 1 of any (interleaved), so a slow phase of the machine hits all of them
alike. The reported time is the median. A repetition repeats the call until it has run for at least
``--min-seconds`` and reports the mean, so millisecond calls are timed too.

- forward: ``torch.inference_mode()``; train: forward + backward + ``AdamW.step()``; train_lean: the same with
  the update inside backward (``StepInBackward``, applied to every implementation: it is plain PyTorch) and, for
  perceiverio, gradient checkpointing of the cross-attentions and latent layers (transformers' Perceiver has
  none). Its FLOPs are
  counted without the recomputation.
- bf16: ``torch.autocast("cpu", torch.bfloat16)`` around the call, float32 weights.
- peak memory: the worker's peak resident set (``VmHWM``), reset (``/proc/self/clear_refs``) after the warm-up,
  so it is the steady-state peak of the timed calls, weights included: what the OS sees, allocator caching and
  fragmentation included. Also the peak of live tensor memory (what ``torch.cuda.max_memory_allocated`` would
  say on a GPU): the bytes of weights, buffers, gradients and optimiser state held before one more call, plus
  the running sum of the allocator's allocations and frees during it (``torch.profiler``, ``profile_memory``).
- FLOPs: ``torch.utils.flop_counter`` over one call, eager, with the math attention backend (the fused CPU
  kernels are not counted by the counter). Achieved FLOP/s are given as a fraction of the machine's dense matmul
  throughput measured within the same cell (``torch.mm`` of 2048 x 2048 matrices, same precision and threads,
  before each repetition round and after the last; median), since a shared machine drifts by minutes.
- equal weights: for the presets perceiverio is converted from the transformers model, and the worker reports a
  fingerprint of the output; the JSON records the largest difference to transformers' relative to its largest value.

Results go to ``benchmarks/results/bench.json`` (merged with earlier runs by cell); ``report.py`` renders them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench.json"
DEFAULT_SIZES = {
    "sweep_m": [2**k for k in range(12, 21, 2)],
    "sweep_o": [2**k for k in range(12, 21, 2)],
    "ar": [1024, 4096, 16384],  # context length L, 256 latents
}
DEFAULT_MODES = {
    "mlm": ["forward", "train", "train_lean"],
    "imagenet": ["forward", "train"],
    "flow": ["forward", "train"],
    "kinetics": ["forward", "train"],
    "sweep_m": ["forward", "train"],
    "sweep_o": ["forward", "train"],
    "ar": ["train", "forward", "generate", "generate_uncached"],
}
MODES = ("forward", "train", "train_lean", "generate", "generate_uncached")
MODE_IMPLS = {"generate_uncached": ("ours",)}  # the others have no cache: their "generate" is uncached


# ------------------------------------------------------------------------------------------------- worker
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _held_bytes(model, opt) -> int:
    """Bytes of the distinct storages of the weights, buffers, gradients and optimiser state."""
    import torch

    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [q.grad for q in model.parameters() if q.grad is not None]
    if opt is not None:
        tensors += [v for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _tensor_peak_bytes(call) -> int:
    """Peak of the allocator's live bytes during ``call()`` above those at its start (CPU allocations)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def _worker(conn, spec: dict) -> None:
    sys.path.insert(0, str(HERE))
    import torch
    from cases import build
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    try:
        torch.set_num_threads(spec["threads"])
        case = build(spec["case"], spec["impl"], spec["size"])
        model = case.model
        train = spec["mode"].startswith("train")
        lean = spec["mode"] == "train_lean"
        model.train(train)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if spec["precision"] == "bf16"
            else torch.autocast("cpu", enabled=False)
        )
        fn = case.loss if train else case.forward
        scale = 1.0 if train else case.scale  # the scale stands for transformers' chunked Kinetics inference loop
        if spec["mode"] in case.extra:  # generation: the time per new byte
            fn, items = case.extra[spec["mode"]]
            scale = 1.0 / items
        elif spec["mode"] not in ("forward", "train", "train_lean"):
            fn = None
        if fn is None:
            raise ValueError(f"{spec['case']} has no {spec['mode']} mode")
        if spec["compile"]:
            fn = torch.compile(fn)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5) if train else None
        checkpointed = []
        if lean:
            from perceiverio.training.optim import StepInBackward

            StepInBackward(opt)
            if spec["impl"] == "ours":
                checkpointed = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]

        def call():
            if train:
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = fn()
                loss.backward()
                opt.step()
                return loss
            with torch.inference_mode(), autocast:
                return fn()

        flops = None
        if spec["count_flops"]:
            # the counter sees only aten ops it knows: count one-pass attention (chunked key/value reading calls
            # the fused kernel directly, which it would miss)
            from perceiverio.core.blocks import CrossAttentionBlock

            chunked = [m for m in model.modules() if isinstance(m, CrossAttentionBlock)]
            saved = [m.kv_chunk_size for m in chunked]
            for m in chunked:
                m.kv_chunk_size = None
            for m in checkpointed:  # model FLOPs, without the recomputation
                m.gradient_checkpointing = False
            with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
                if train:
                    with autocast:
                        (case.loss()).backward()
                    model.zero_grad(set_to_none=True)
                else:  # frozen weights rather than no_grad: the counter's module tracking needs grad mode
                    flags = [q.requires_grad for q in model.parameters()]
                    model.requires_grad_(False)
                    with autocast:
                        case.forward()
                    for q, flag in zip(model.parameters(), flags):
                        q.requires_grad_(flag)
            flops = counter.get_total_flops() * scale
            for m, size in zip(chunked, saved):
                m.kv_chunk_size = size
        for m in checkpointed:
            m.gradient_checkpointing = True
        out = None
        for _ in range(2 if spec["compile"] else 1):  # warm-up (and compilation)
            out = call()
        fingerprint = out.detach().float().flatten()[:20_000].tolist()
        del out
        base_kib = _status_kib("VmRSS")
        _reset_peak()
        conn.send({"ready": True})
        while True:
            cmd = conn.recv()
            if cmd == "run":
                n, t0 = 0, time.perf_counter()
                while True:
                    call()
                    n += 1
                    elapsed = time.perf_counter() - t0
                    if elapsed >= spec["min_seconds"]:
                        break
                conn.send({"seconds": elapsed / n * scale, "calls": n})
            elif cmd == "stats":
                peak_kib = _status_kib("VmHWM")
                if train:
                    opt.zero_grad(set_to_none=True)  # as at the start of every call
                held = _held_bytes(model, opt)
                tensor_peak = held + _tensor_peak_bytes(call)
                conn.send(
                    {
                        "peak_gib": peak_kib / 2**20,
                        "base_gib": base_kib / 2**20,
                        "tensor_peak_gib": tensor_peak / 2**30,
                        "held_gib": held / 2**30,
                        "params": case.params,
                        "flops": flops,
                        "note": case.note,
                        "scale": scale,
                        "fingerprint": fingerprint,
                    }
                )
            else:
                return
    except Exception as e:  # reported as the cell's error; the run goes on
        conn.send({"error": f"{type(e).__name__}: {e}"})


# ------------------------------------------------------------------------------------------------- driver
def matmul_flops(threads: int, precision: str, n: int = 4096, reps: int = 5) -> float:
    """Dense matmul FLOP/s of this machine: the median of ``reps`` ``torch.mm`` of n x n matrices."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def _receive(conn, proc) -> dict:
    """The worker's reply, or an error saying how it died (the OOM killer's SIGKILL reads as exit code -9)."""
    try:
        return conn.recv()
    except (EOFError, ConnectionResetError):
        proc.join(timeout=30)
        why = "killed (SIGKILL: out of memory?)" if proc.exitcode == -9 else f"exit code {proc.exitcode}"
        return {"error": f"worker died: {why}"}


def run_cell(cell: dict, impls: list[str], reps: int, log) -> list[dict]:
    ctx = mp.get_context("spawn")
    workers = {}
    results = {impl: {**cell, "impl": impl, "times": []} for impl in impls}
    for impl in impls:  # build one after another: no two builds compete for the cores
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, {**cell, "impl": impl}), daemon=True)
        proc.start()
        child.close()  # the worker holds the only write end: its death reads as EOF here
        reply = _receive(parent, proc)
        if "error" in reply:
            log(f"  {impl}: {reply['error']}")
            results[impl]["error"] = reply["error"]
            proc.join()
            continue
        workers[impl] = (proc, parent)
    matmul = []  # the machine's matmul throughput, measured between the repetitions of this cell
    for r in range(reps):
        matmul.append(matmul_flops(cell["threads"], cell["precision"], n=2048, reps=3))
        for impl, (proc, conn) in workers.items():
            if "error" in results[impl]:
                continue
            conn.send("run")
            reply = _receive(conn, proc)
            if "error" in reply:
                results[impl]["error"] = reply["error"]
                continue
            results[impl]["times"].append(reply["seconds"])
        log(
            f"  rep {r + 1}/{reps}: "
            + ", ".join(f"{impl} {results[impl]['times'][-1]:.4g} s" for impl in workers if results[impl]["times"])
        )
    for impl, (proc, conn) in workers.items():
        if "error" in results[impl]:
            continue
        conn.send("stats")
        results[impl].update(_receive(conn, proc))
        if "error" not in results[impl]:  # a worker that died in its last call has no pipe left to stop
            conn.send("stop")
        proc.join(timeout=60)
    matmul.append(matmul_flops(cell["threads"], cell["precision"], n=2048, reps=3))
    out = []
    reference = results.get("hf", {}).get("fingerprint")
    for impl, res in results.items():
        if res["times"]:
            res["median_s"] = statistics.median(res["times"])
        res["matmul_flops"] = statistics.median(matmul)
        fp = res.pop("fingerprint", None)
        if reference and fp and impl != "hf" and cell["case"] in ("mlm", "imagenet", "flow", "kinetics"):
            n = min(len(fp), len(reference))  # Kinetics: transformers' first chunk against our first points
            scale = max(abs(v) for v in reference[:n]) or 1.0
            res["max_rel_diff_vs_hf"] = max(abs(a - b) for a, b in zip(fp[:n], reference[:n])) / scale
        out.append(res)
    return out


def _key(rec: dict) -> tuple:
    return (rec["case"], rec.get("size"), rec["impl"], rec["mode"], rec["precision"], rec["compile"])


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(HERE))
    from cases import AR, IMPLS, PRESETS, SWEEPS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(PRESETS + SWEEPS))
    p.add_argument("--impls", default="ours,hf,lucidrains,transformer", help="those that apply to each case")
    p.add_argument("--modes", default=None, help=f"a subset of {','.join(MODES)} (default: per case)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--compiled-only", action="store_true", help="measure only the torch.compile variants")
    p.add_argument("--sizes", default=None, help="M or O values for the sweeps (default 4k ... 1M)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    unknown = set((args.modes or "").split(",")) - set(MODES) - {""}
    if unknown:
        p.error(f"--modes: unknown {sorted(unknown)}; choose from {','.join(MODES)}")

    def log(msg: str) -> None:
        print(msg, flush=True)

    import torch

    machine = {
        "cpu": _cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    precisions = args.precisions.split(",")
    machine["matmul_flops"] = {pr: matmul_flops(args.threads, pr) for pr in precisions}
    log(f"machine: {machine}")
    previous = json.loads(args.json.read_text()) if args.json.is_file() else {"records": []}
    records = {_key(r): r for r in previous["records"]}
    for case in args.cases.split(","):
        impls = [i for i in args.impls.split(",") if i in IMPLS[case]]
        modes = args.modes.split(",") if args.modes else DEFAULT_MODES[case]
        sizes = (
            ([int(s) for s in args.sizes.split(",")] if args.sizes else DEFAULT_SIZES[case])
            if case in SWEEPS + AR
            else [None]
        )
        for size in sizes:
            for mode in modes:
                mode_impls = [i for i in impls if i in MODE_IMPLS.get(mode, impls)]
                for precision in precisions:
                    for compiled in [True] if args.compiled_only else [False, True] if args.compile else [False]:
                        cell = {
                            "case": case,
                            "size": size,
                            "mode": mode,
                            "precision": precision,
                            "compile": compiled,
                            "threads": args.threads,
                            "min_seconds": args.min_seconds,
                            # AR: none (the math backend's L x L attention matrices do not fit at 16k)
                            "count_flops": not args.no_flops and not compiled and case not in AR,
                        }
                        log(f"{case} size={size} {mode} {precision}{' compiled' if compiled else ''}")
                        for rec in run_cell(cell, mode_impls, args.reps, log):
                            eager = records.get(_key({**rec, "compile": False}), {})
                            if rec.get("flops") is None and eager.get("flops"):
                                rec["flops"] = eager["flops"]  # compiled cells reuse the eager count
                            records[_key(rec)] = rec
                        args.json.parent.mkdir(parents=True, exist_ok=True)
                        tmp = args.json.with_suffix(".tmp")
                        tmp.write_text(json.dumps({"machine": machine, "records": list(records.values())}, indent=1))
                        tmp.replace(args.json)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
