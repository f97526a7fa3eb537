"""ONNX export of the released-size models, measured: export time, file size, onnxruntime vs PyTorch eager (time,
peak memory, agreement) for one batch. Random weights (the sizes are what matters here).

    PYTHONPATH=src python benchmarks/export_onnx.py --model mlm  --workdir /tmp/export-bench
    PYTHONPATH=src python benchmarks/export_onnx.py --model flow --workdir /tmp/export-bench

mlm: ``MaskedLanguageModelConfig.language_perceiver()`` (201M), one batch of 1 × 2048 bytes.
flow: ``OpticalFlowConfig()`` (the released 41M model), one pair of 368 × 496 frames.

Each step runs in a fresh Python process (``--step``), which reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so that the numbers do not mix: ``save`` writes the random model,
``export`` loads it and exports (without the built-in check, which would run eager and onnxruntime twice more),
``eager`` and ``ort`` each load their model and run the same inputs twice (first call, then a warm call) and save the
outputs, which the driver compares.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _model_and_inputs(name: str, folder: Path, batch: int):
    import perceiverio as p
    from perceiverio.weights.export_inputs import signature

    model = p.PerceiverIO.from_pretrained(folder)
    sig = signature(model)
    return model, sig, sig.example(batch, None)


def step(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    folder, onnx_path = work / f"{args.model}-model", work / f"{args.model}.onnx"
    start = time.perf_counter()
    if args.step == "save":
        import perceiverio as p

        torch.manual_seed(0)
        if args.model == "mlm":
            model = p.MaskedLanguageModel(p.MaskedLanguageModelConfig.language_perceiver())
        else:
            model = p.OpticalFlow(p.OpticalFlowConfig())
        model.save_pretrained(folder)
        return {"parameters": model.num_parameters(), "seconds": time.perf_counter() - start}
    if args.step == "export":
        model, _, _ = _model_and_inputs(args.model, folder, args.batch)
        loaded_mb = _peak_mb()
        start = time.perf_counter()
        result = model.export(onnx_path, check=False, overwrite=True, progress=True)
        return {
            "export_seconds": time.perf_counter() - start,
            "file_mb": result.size_bytes / 1e6,
            "peak_rss_mb": _peak_mb(),
            "rss_after_loading_mb": loaded_mb,
        }
    if args.step == "eager":
        model, sig, inputs = _model_and_inputs(args.model, folder, args.batch)
        times = []
        with torch.no_grad():
            for _ in range(2):
                t = time.perf_counter()
                out = [o.numpy() for o in sig.call(model, *inputs)]
                times.append(time.perf_counter() - t)
        np.save(work / f"{args.model}-eager.npy", out[0])
        return {"first_seconds": times[0], "warm_seconds": times[1], "peak_rss_mb": _peak_mb()}
    # ort: only the inputs come from perceiverio (the model is not built)
    import onnxruntime as ort

    import perceiverio as p
    from perceiverio.weights.checkpoint import config_from_dict
    from perceiverio.weights.export_inputs import signature

    config = config_from_dict(json.loads((folder / "config.json").read_text())["config"])
    with torch.device("meta"):  # no weights: only the signature's example inputs are needed
        shell = (p.MaskedLanguageModel if args.model == "mlm" else p.OpticalFlow)(config)
    sig = signature(shell)
    inputs = {n: a.numpy() for n, a in zip(sig.inputs, sig.example(args.batch, None))}
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    t = time.perf_counter()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t
    times = []
    for _ in range(2):
        t = time.perf_counter()
        out = session.run(None, inputs)
        times.append(time.perf_counter() - t)
    np.save(work / f"{args.model}-ort.npy", out[0])
    return {"session_seconds": load, "first_seconds": times[0], "warm_seconds": times[1], "peak_rss_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mlm", "flow"], required=True)
    parser.add_argument("--workdir", default="/tmp/export-bench")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step", choices=["save", "export", "eager", "ort"], help="(internal) run one step")
    args = parser.parse_args()
    if args.step:
        print("RESULT " + json.dumps(step(args)), flush=True)
        return
    import numpy as np

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    report = {}
    for name in ("save", "export", "eager", "ort"):
        argv = [sys.executable, __file__, "--model", args.model, "--workdir", args.workdir]
        argv += ["--batch", str(args.batch), "--threads", str(args.threads), "--step", name]
        print(f"[{args.model}] {name} ...", file=sys.stderr, flush=True)
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
        report[name] = json.loads(line[len("RESULT ") :])
        print(f"[{args.model}] {name}: {report[name]}", file=sys.stderr, flush=True)
    work = Path(args.workdir)
    e, o = np.load(work / f"{args.model}-eager.npy"), np.load(work / f"{args.model}-ort.npy")
    report["max_relative_difference"] = float(np.abs(e - o).max() / np.abs(e).max())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
