"""Fine-tuning the size of the latent array: train a Fashion-MNIST model once, then fine-tune it with N, N/2 and 2N
latents (``init_from`` + ``encoder.num_latents``: the latents are resized from the trained ones) and, for
comparison, with N/2 and 2N latents drawn afresh (every other weight warm-started). Reports the test accuracy
(the 10k t10k images) and the throughput of every model, before and after.

    python benchmarks/resize_latents.py [--out runs/resize-latents] [--base-minutes 8] [--minutes 3]
        [--steps N] [--base MODEL_DIR] [--no-scratch] [--data /usr/share/datasets/fashion-mnist]

Every run is ``perceiverio fit --config configs/fashion-mnist.yaml`` with ``--trainer.max_time`` set to the budget
(the recipe's cosine schedule follows it), or ``--trainer.max_steps`` with ``--steps`` (the same number of steps
for every variant whatever else the machine runs), so the commands are the ones a user types; they are printed.
Throughput is measured on one fixed batch of 128 test images, separately for inference (eval mode, no gradient)
and training (forward, loss, backward and an AdamW step), as the median of ``--repeats`` timed steps after two
warm-up steps, on the threads torch uses by default. Results: ``OUT/results.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from perceiverio import ImageClassifier
from perceiverio.core.init import trunc_normal_
from perceiverio.data import ImageDataModule

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fashion-mnist.yaml"
BATCH = 128


def fit(out: Path, minutes: float, data: str, extra: list[str], steps: int | None = None) -> Path:
    """Run ``perceiverio fit`` into ``out`` for ``minutes`` of wall time, or ``steps`` optimiser steps when given
    (skipped when ``out`` already holds an exported model); returns the exported model's folder."""
    found = sorted(out.glob("fashion-mnist/version_*/model/config.json"))
    if found:
        print(f"reusing {found[-1].parent}", flush=True)
        return found[-1].parent
    seconds = round(minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    length = ["--trainer.max_time", budget] if steps is None else ["--trainer.max_time", "null"]
    length += [] if steps is None else ["--trainer.max_steps", str(steps)]
    cmd = ["perceiverio", "fit", "--config", str(CONFIG), *length]
    cmd += ["--trainer.default_root_dir", str(out), "--data.init_args.path", data, *extra]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "perceiverio.cli", *cmd[1:]], check=True)
    return sorted(out.glob("fashion-mnist/version_*/model/config.json"))[-1].parent


def scratch_source(base: Path, n: int, out: Path) -> Path:
    """The base model with a freshly initialised ``[n, D]`` latent array (the encoder's own init), saved to ``out``:
    ``init_from`` it warm-starts every weight but the latents."""
    if not (out / "config.json").is_file():
        torch.manual_seed(0)
        model = ImageClassifier.from_pretrained(base, num_latents=n)
        with torch.no_grad():
            trunc_normal_(model.encoder.latents, 0.02)
        model.save_pretrained(out)
    return out


def accuracy(model: ImageClassifier, data: ImageDataModule) -> float:
    correct = total = 0
    with torch.inference_mode():
        for batch in data.test_dataloader():
            correct += int((model(batch["images"]).logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def throughput(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(inference, training) images per second on the fixed batch."""

    def timed(step) -> float:
        for _ in range(2):
            step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return len(images) / statistics.median(times)

    model.eval()
    with torch.inference_mode():
        infer = timed(lambda: model(images))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(images, labels=labels).loss.backward()
        optimizer.step()

    train = timed(train_step)
    model.eval()
    return infer, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/resize-latents"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--base", type=Path, help="a trained Fashion-MNIST model folder (skips the base run)")
    p.add_argument("--base-minutes", type=float, default=8.0)
    p.add_argument("--minutes", type=float, default=3.0, help="wall-time budget of each fine-tuning run")
    p.add_argument(
        "--steps", type=int, help="fine-tune for this many steps instead of --minutes (fair on a shared machine)"
    )
    p.add_argument("--no-scratch", action="store_true", help="skip the runs with freshly drawn latents")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()

    base = args.base or fit(args.out / "base", args.base_minutes, args.data, [])
    n = ImageClassifier.from_pretrained(base).config.encoder.num_latents
    runs: dict[str, tuple[Path, str]] = {"base": (base, "trained")}
    for size in (n, n // 2, 2 * n):
        run = fit(args.out / f"resized-{size}", args.minutes, args.data, init(base, size), args.steps)
        runs[f"resized-{size}"] = (run, f"fine-tuned from base, latents resized {n} → {size}")
    if not args.no_scratch:
        for size in (n // 2, 2 * n):
            source = scratch_source(base, size, args.out / "sources" / f"scratch-{size}")
            run = fit(args.out / f"scratch-{size}", args.minutes, args.data, init(source, size), args.steps)
            runs[f"scratch-{size}"] = (run, f"fine-tuned from base, {size} latents drawn afresh")

    data = ImageDataModule(path=args.data, image_size=(28, 28), channels=1, batch_size=1000)
    data.setup("test")
    fixed = next(iter(data.test_dataloader()))
    images, labels = fixed["images"][:BATCH], fixed["labels"][:BATCH]
    results = []
    for name, (folder, what) in runs.items():
        models = [(name, what, ImageClassifier.from_pretrained(folder))]
        if name == "base":  # the resize alone, before any fine-tuning
            for other in (n // 2, 2 * n):
                resized = ImageClassifier.from_pretrained(folder, num_latents=other)
                models.append((f"base→{other}", f"base resized {n} → {other}, not fine-tuned", resized))
        for label, text, model in models:
            torch.manual_seed(0)
            acc = accuracy(model, data)
            infer, train = throughput(model, images, labels, args.repeats)
            row = {
                "run": label,
                "what": text,
                "num_latents": model.config.encoder.num_latents,
                "test_accuracy": acc,
                "inference_images_per_s": infer,
                "training_images_per_s": train,
                "model": str(folder),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| run | N | test accuracy | inference img/s | training img/s |\n|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['what']} | {r['num_latents']} | {100 * r['test_accuracy']:.2f}% | "
            f"{r['inference_images_per_s']:,.0f} | {r['training_images_per_s']:,.0f} |"
        )


def init(source: Path, size: int) -> list[str]:
    return ["--model.init_args.init_from", str(source), "--model.init_args.encoder.num_latents", str(size)]


if __name__ == "__main__":
    main()
