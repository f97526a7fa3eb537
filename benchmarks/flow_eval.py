"""Score a trained optical-flow model on real pairs against predicting no motion, at several working resolutions.

Every end-point error (EPE) is averaged over the valid pixels of the ground truth at its native resolution; the
``scale`` column is :meth:`~perceiverio.OpticalFlow.predict`'s working resolution (frames resized by it and tiled
with the model's tile, flow resized back). Rows:

- ``middlebury @ train size``: scikit-image's Middlebury motorcycle pair resized to the model's training size (the
  ``val/epe`` of ``configs/flow-synthetic.yaml``);
- ``middlebury native``: the same pair at 500 × 741 (disparities up to 60 px);
- ``flyingchairs``: the 9 FlyingChairs pairs of ``--flyingchairs`` at 384 × 512.

    python benchmarks/flow_eval.py runs/results/flow-seed0/model --flyingchairs ../shared/data/flow/flyingchairs
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from perceiverio import OpticalFlow
from perceiverio.data.flow import FlowFolderDataset, make_pair, middlebury_pair
from perceiverio.data.readers.flow import find_flow_pairs, middlebury_motorcycle
from perceiverio.tasks.flow import scaled_size
from perceiverio.training.metrics import epe_stats
from perceiverio.weights.checkpoint import load_pretrained


def score(model: OpticalFlow, pairs: list[dict], scale: float | None) -> dict[str, float]:
    """Pooled EPE and zero-flow EPE over the pairs; ``scale=None``: the model at once (frames of its tile)."""
    epe = zero = count = 0.0
    for p in pairs:
        frames, flow, valid = p["frames"][None], p["flow"][None], p["valid"][None]
        pred = model(frames) if scale is None else model.predict(frames, scale=scale)
        e, n = epe_stats(pred, flow, valid)
        epe, count = epe + float(e), count + float(n)
        zero += float(epe_stats(torch.zeros_like(flow), flow, valid)[0])
    return {"epe": epe / count, "zero_epe": zero / count, "ratio": epe / zero}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an exported OpticalFlow folder (save_pretrained / the fit's export)")
    ap.add_argument("--flyingchairs", default="../shared/data/flow/flyingchairs", help="a FlyingChairs folder")
    ap.add_argument("--scales", default="1,0.5,0.25", help="working resolutions of predict, comma-separated")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load_pretrained(args.model, expected=OpticalFlow)
    tile = model.config.tile
    left, right, flow, valid = middlebury_motorcycle()
    sets = {
        "middlebury native": [make_pair(left, right, flow, valid, None, "middlebury")],
        "flyingchairs": list(FlowFolderDataset(find_flow_pairs(args.flyingchairs, "clean", "val"), None)),
    }
    rows = [{"set": "middlebury @ train size", "scale": "-", **score(model, [middlebury_pair(tile)], None)}]
    for name, pairs in sets.items():
        size = tuple(pairs[0]["frames"].shape[-2:])
        for scale in (float(s) for s in args.scales.split(",")):
            small = scaled_size(size, scale)
            if small[0] < tile[0] or small[1] < tile[1]:
                continue  # the resized frames would not cover one tile
            start = time.perf_counter()
            rows.append({"set": name, "scale": scale, **score(model, pairs, scale)})
            rows[-1]["seconds"] = round(time.perf_counter() - start, 1)
    print("| set | scale | EPE (px) | zero-flow EPE (px) | EPE / zero |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['scale']} | {r['epe']:.3f} | {r['zero_epe']:.3f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
