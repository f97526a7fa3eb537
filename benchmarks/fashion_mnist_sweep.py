"""Fashion-MNIST sweep: input variants and sizes of the image classifier under one wall-time budget on this machine.

Each variant trains for ``--minutes`` of wall time (the learning rate warms up, then follows a cosine over the
*time* budget, as ``schedule_by_time`` does in the recipes) on the 60k training images and is scored on the 10k
test images. The loop is plain PyTorch over in-memory tensors (the recipe's own loader does the same), so the
numbers measure the model and the optimiser, not Lightning. Results are appended as JSON lines to ``--out``.

    python benchmarks/fashion_mnist_sweep.py --minutes 3 --variants conv,patches4,pixels_fourier --out sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from perceiverio import ImageClassifier, ImageClassifierConfig
from perceiverio.adapters.image import ImageAdapterConfig
from perceiverio.core.config import DecoderConfig, EncoderConfig
from perceiverio.data.readers.image import read_idx_dataset
from perceiverio.training.augment import flip_and_translate
from perceiverio.training.optim import build_optimizer


def encoder(n=32, d=128, heads=4, per_block=4, blocks=1, cross_heads=1, widening=1) -> EncoderConfig:
    return EncoderConfig(
        self_attention_widening_factor=widening,
        num_latents=n,
        num_latent_channels=d,
        num_cross_attention_heads=cross_heads,
        num_self_attention_heads=heads,
        num_self_attends_per_block=per_block,
        num_blocks=blocks,
    )


def adapter(kind: str) -> ImageAdapterConfig:
    base = dict(image_shape=(28, 28), num_image_channels=1)
    if kind == "conv":  # the paper's conv stem (7×7/2, BN, ReLU, max-pool 3×3/2): 7×7 tokens, + Fourier
        return ImageAdapterConfig(**base, prep_type="conv", spatial_downsample=4, num_channels=64, num_bands=7)
    if kind == "patches4":  # 4×4 patches + Linear: 7×7 tokens, + Fourier
        return ImageAdapterConfig(
            **base, prep_type="patches", spatial_downsample=4, conv_after_patching=True, num_channels=64, num_bands=7
        )
    if kind == "patches2":  # 2×2 patches + Linear: 14×14 tokens, + Fourier
        return ImageAdapterConfig(
            **base, prep_type="patches", spatial_downsample=2, conv_after_patching=True, num_channels=32, num_bands=14
        )
    if kind == "pixels_fourier":  # the paper's ImageNet model: raw pixels + 2D Fourier features, 784 tokens
        return ImageAdapterConfig(**base, num_bands=14)
    if kind == "pixels_learned":  # conv1x1 + learned positions (the paper's "learned" model), 784 tokens
        return ImageAdapterConfig(
            **base, prep_type="conv1x1", num_channels=32, position_encoding="trainable", num_pos_channels=32
        )
    raise ValueError(kind)


def build(kind: str, size: str) -> ImageClassifier:
    enc = {
        "s": encoder(32, 128, 4, 4, 1),
        "m": encoder(64, 192, 4, 4, 1),
        "s2": encoder(32, 128, 4, 3, 2),
        "l": encoder(64, 256, 8, 6, 1),
        "s_wide": encoder(32, 128, 4, 4, 1, widening=2),
    }[size]
    cfg = ImageClassifierConfig(
        adapter=adapter(kind),
        encoder=enc,
        decoder=DecoderConfig(num_query_channels=enc.num_latent_channels, use_query_residual=True),
        num_classes=10,
        label_smoothing=0.1,
    )
    return ImageClassifier(cfg)


@torch.no_grad()
def accuracy(model, x, y, batch=1000) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch]).logits.argmax(-1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch)
    )
    model.train()
    return correct / len(x)


def run(args, kind: str, size: str, data) -> dict:
    torch.manual_seed(args.seed)
    (x, y), (xt, yt) = data
    model = build(kind, size)
    opt = build_optimizer(model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
    budget = args.minutes * 60
    step, seen, start = 0, 0, time.perf_counter()
    steps = args.steps or float("inf")
    g = torch.Generator().manual_seed(args.seed)
    perm, pos = torch.randperm(len(x), generator=g), 0
    curve = []
    while (elapsed := time.perf_counter() - start) < budget and step < steps:
        frac = max(elapsed / budget, step / steps)
        warm = min(1.0, (step + 1) / args.warmup)
        factor = warm * 0.5 * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = args.lr * factor
        if pos + args.batch > len(x):
            perm, pos = torch.randperm(len(x), generator=g), 0
        idx = perm[pos : pos + args.batch]
        pos += args.batch
        xb = flip_and_translate(x[idx], args.flip, args.pad)  # the recipe's own augmentation
        loss = model(xb, labels=y[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += len(idx)
        if step % 100 == 0:
            curve.append((round(elapsed, 1), step, round(loss.item(), 4)))
    train_s = time.perf_counter() - start
    acc = accuracy(model, xt, yt)
    return dict(
        variant=kind,
        size=size,
        minutes=args.minutes,
        budget_steps=args.steps,
        steps=step,
        epochs=round(seen / len(x), 2),
        train_s=round(train_s, 1),
        ms_per_step=round(1000 * train_s / step, 1),
        test_acc=round(acc, 4),
        params=sum(p.numel() for p in model.parameters()),
        lr=args.lr,
        optimizer=args.optimizer,
        batch=args.batch,
        pad=args.pad,
        flip=args.flip,
        seed=args.seed,
        curve=curve,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--variants", default="conv,patches4,patches2,pixels_fourier,pixels_learned")
    p.add_argument("--sizes", default="s")
    p.add_argument("--minutes", type=float, default=3.0, help="wall-time budget per variant")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="step budget per variant (0: time only); the schedule follows"
        " whichever budget runs out first, so a step budget gives results independent of machine load",
    )
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", default="1e-3", help="one or more comma-separated peak learning rates")
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fashion_mnist_sweep.jsonl")
    args = p.parse_args()
    d = read_idx_dataset(args.path)
    mean, std = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics (in [0, 1])

    def tensors(split):
        a, lab = d[split]  # IDX: "train" (60k) and "test" (the t10k files, 10k)
        return (torch.from_numpy(a).float().div(255.0).sub(mean).div(std)[:, None], torch.from_numpy(lab).long())

    data = tensors("train"), tensors("test")
    for lr in [float(v) for v in args.lr.split(",")]:
        for size in args.sizes.split(","):
            for kind in args.variants.split(","):
                r = run(argparse.Namespace(**{**vars(args), "lr": lr}), kind, size, data)
                print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
