"""Peak memory and wall time of a full Kinetics reconstruction on CPU.

Builds ``MultimodalAutoencoder(MultimodalAutoencoderConfig.kinetics())`` with random weights (19.9M parameters),
encodes a random 16×224×224 video + 30,720 audio samples + a label, and decodes every output point (802,816 pixels,
1,920 audio patches, the label) in chunks under ``torch.no_grad()``. Run it in a fresh process: the peak resident set
size (``resource.getrusage``) covers the whole process, imports included.

    python benchmarks/kinetics_memory.py [--chunk-size 16384] [--threads N] [--json out.json]

Acceptance: peak RSS below 6 GB.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk-size", type=int, default=16_384, help="decoder queries per chunk")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true", help="show a tqdm progress bar")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    import torch

    from perceiverio.tasks.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss_import = peak_rss_bytes()
    model = MultimodalAutoencoder(MultimodalAutoencoderConfig.kinetics()).eval()
    inputs = {"image": torch.rand(1, 16, 3, 224, 224), "audio": torch.randn(1, 30_720, 1), "label": torch.zeros(1, 700)}
    rss_model = peak_rss_bytes()

    t0 = time.perf_counter()
    with torch.no_grad():
        z = model.encode(inputs)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.reconstruct(inputs, chunk_size=args.chunk_size, progress=args.progress)
    t_total = time.perf_counter() - t0
    peak = peak_rss_bytes()

    assert z.shape == (1, 784, 512)
    assert out["image"].shape == (1, 16, 3, 224, 224) and out["audio"].shape == (1, 30_720)
    assert out["label"].shape == (1, 700)
    result = {
        "parameters": model.num_parameters(),
        "chunk_size": args.chunk_size,
        "threads": torch.get_num_threads(),
        "encode_s": round(t_encode, 2),
        "reconstruct_s": round(t_total, 2),
        "peak_rss_gb": round(peak / 1e9, 3),
        "rss_after_import_gb": round(rss_import / 1e9, 3),
        "rss_after_model_and_inputs_gb": round(rss_model / 1e9, 3),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "acceptance_peak_below_6gb": peak < 6e9,
    }
    for key, value in result.items():
        print(f"{key:>32}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if peak >= 6e9:
        sys.exit(1)


if __name__ == "__main__":
    main()
