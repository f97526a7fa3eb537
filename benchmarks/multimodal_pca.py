"""PCA baselines for the multimodal autoencoder: the same held-out clips, the same number of floats per clip.

The Perceiver IO autoencoder squeezes a clip (video, audio, label) through its latent array, N × D floats (64 × 128
= 8,192 in ``configs/multimodal.yaml``). Two linear codes with at most as many floats per clip, fitted on the training
part of the video (the frames before the held-out last ``val_fraction``, exactly the data module's split) and scored
with the same per-example PSNR on the data module's test clips:

- ``clip``: PCA of whole clips, one basis per modality (components split in proportion to the values of each, and
  at most the number of training clips);
- ``patch``: PCA of the model's own input patches (video ``spatial_downsample²`` × ``temporal_downsample`` pixels,
  audio ``samples_per_patch`` samples), keeping per patch the share of the float budget the patch has of the clip's
  values: a local code, the classic transform-coding baseline.

Also the scores of codes that learnt nothing (``zero``; ``train_mean``: the mean training clip; ``clip_mean``: each
test clip's own mean value), the floor a trained model must clear, and each modality's RMS.

    python benchmarks/multimodal_pca.py --path ../shared/data/video/big_buck_bunny_0_30.webm
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from perceiverio.data import VideoDataModule
from perceiverio.training.metrics import psnr


def _pca(train: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and the top ``k`` principal directions ``[k, D]`` of the rows of ``train`` ``[n, D]``."""
    mean = train.mean(0)
    _, _, vh = torch.linalg.svd(train - mean, full_matrices=False)
    return mean, vh[:k]


def _project(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return (x - mean) @ basis.T @ basis + mean


def _video_patches(v: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """``[B, T, 3, H, W]`` -> ``[B·P, t·s·s·3]`` spatio-temporal patches."""
    b, tt, c, h, w = v.shape
    x = v.reshape(b, tt // t, t, c, h // s, s, w // s, s).permute(0, 1, 4, 6, 2, 5, 7, 3)
    return x.reshape(-1, t * s * s * c)


def _unpatch_video(p: torch.Tensor, shape: torch.Size, t: int, s: int) -> torch.Tensor:
    b, tt, c, h, w = shape
    x = p.reshape(b, tt // t, h // s, w // s, t, s, s, c).permute(0, 1, 4, 7, 2, 5, 3, 6)
    return x.reshape(shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", default=None, help="video file or folder (default: the embedded Big Buck Bunny clip)")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--image_size", type=int, nargs=2, default=(32, 32))
    p.add_argument("--audio_samples", type=int, default=1920)
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--latent_floats", type=int, default=64 * 128, help="N × D of the autoencoder")
    p.add_argument("--spatial_downsample", type=int, default=4)
    p.add_argument("--temporal_downsample", type=int, default=1)
    p.add_argument("--samples_per_patch", type=int, default=16)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args()

    dm = VideoDataModule(
        path=args.path,
        num_frames=args.num_frames,
        image_size=tuple(args.image_size),
        audio_samples=args.audio_samples,
        val_fraction=args.val_fraction,
    )
    dm.setup()
    train = [dm.clip((v, s)) for v, n in enumerate(dm.train_starts) for s in range(n)]
    test = [dm.clip(d) for d in dm.test_clips]
    video = torch.stack([c["image"] for c in train]), torch.stack([c["image"] for c in test])  # [n, T, 3, H, W]
    audio = torch.stack([c["audio"] for c in train]), torch.stack([c["audio"] for c in test])  # [n, S, 1]
    dv, da = video[0][0].numel(), audio[0][0].numel()
    share = args.latent_floats / (dv + da)  # floats per value
    results = {"train_clips": len(train), "test_clips": len(test), "latent_floats": args.latent_floats}

    # trivial codes: what a model that learnt nothing scores (zero; the mean training clip; each clip's own mean)
    for name, (tr, te) in (("video", video), ("audio", audio)):
        flat = te.flatten(1)
        guesses = {
            "zero": torch.zeros_like(flat),
            "train_mean": tr.flatten(1).mean(0, keepdim=True).expand_as(flat),
            "clip_mean": flat.mean(1, keepdim=True).expand_as(flat),
        }
        for what, guess in guesses.items():
            value, defined = psnr(guess, flat)
            results.setdefault(what, {})[name] = float(value[defined].mean())
        results.setdefault("rms", {})[name] = float(flat.square().mean().sqrt())

    # whole clips
    kv = min(len(train), math.floor(share * dv))
    ka = min(len(train), math.floor(share * da))
    out = {}
    for name, (tr, te), k in (("video", video, kv), ("audio", audio, ka)):
        mean, basis = _pca(tr.flatten(1), k)
        rec = _project(te.flatten(1), mean, basis)
        value, defined = psnr(rec, te.flatten(1))
        out[name] = float(value[defined].mean())
    results["clip"] = {**out, "components": {"video": kv, "audio": ka}}

    # patches
    t, s, sp = args.temporal_downsample, args.spatial_downsample, args.samples_per_patch
    tr_v, te_v = (_video_patches(x, t, s) for x in video)
    pv = math.floor(share * tr_v.shape[1])  # never more floats than the latents
    mean, basis = _pca(tr_v, pv)
    rec_v = _unpatch_video(_project(te_v, mean, basis), video[1].shape, t, s)
    tr_a, te_a = (x.reshape(-1, sp) for x in audio)
    pa = max(1, math.floor(share * sp))
    mean, basis = _pca(tr_a, pa)
    rec_a = _project(te_a, mean, basis).reshape(audio[1].shape)
    v_psnr, v_def = psnr(rec_v, video[1])
    a_psnr, a_def = psnr(rec_a, audio[1])
    floats = pv * tr_v.shape[0] // len(train) + pa * tr_a.shape[0] // len(train)
    results["patch"] = {
        "video": float(v_psnr[v_def].mean()),
        "audio": float(a_psnr[a_def].mean()),
        "components": {"video": pv, "audio": pa},
        "floats_per_clip": floats,
    }
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
