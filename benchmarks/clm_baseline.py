"""The quality baseline of Perceiver AR: a same-size decoder-only Transformer (``transformer_lm.py``) trained for
the same wall time on the same byte windows, scored the same way.

    python benchmarks/clm_baseline.py --data ../shared/data/text/tinyshakespeare.txt --context 256 --minutes 30

Data: ``CausalTextDataModule`` with the recipe's seed and batch size, so the model sees the windows that
``configs/clm-shakespeare.yaml`` draws at the same context (the last 10% of the bytes held out). Every position of a
window is trained on (the Transformer's usual loss; Perceiver AR trains its last N). Optimiser: the recipe's
(AdamW over perceiverio's parameter groups, lr 2e-3, weight decay 0.01, 200 warm-up steps, cosine to 0 over the
wall-time budget). The budget counts training steps only; the final score is taken afterwards (the Perceiver AR run
spends part of its 30 minutes on validation, so this favours the baseline).

Score: bits per byte over every held-out byte after the first exactly once, in windows of 64 new bytes each
predicted from up to ``context`` bytes before it: the scoring of ``CausalTextDataModule`` (each byte sees between
``context - 64`` and ``context`` bytes). Results are merged by context into ``--out`` (JSON), with a sample.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transformer_lm import TransformerLM  # noqa: E402

from perceiverio.data import CausalTextDataModule  # noqa: E402
from perceiverio.tasks.outputs import IGNORE_INDEX  # noqa: E402
from perceiverio.tokenizer import NUM_SPECIAL  # noqa: E402
from perceiverio.training.optim import LRSchedule, build_optimizer  # noqa: E402

HERE = Path(__file__).resolve().parent


@torch.no_grad()
def bits_per_byte(model: TransformerLM, data: CausalTextDataModule) -> tuple[float, int]:
    """``(bits per byte, bytes scored)`` over the data module's validation windows, the ones the Perceiver AR task
    scores (every held-out byte once). The few left-padded windows at the start are scored without their padding
    (the Transformer has absolute positions and no padding mask)."""
    model.eval()
    nats, count = 0.0, 0
    for batch in data.val_dataloader():
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"].bool()  # [B, W]
        full = mask.all(dim=1)
        parts = [(ids[full], labels[full])] + [
            (i[m][None], y[m][None]) for i, y, m in zip(ids, labels, mask) if not m.all()
        ]
        for x, y in parts:
            if len(x) == 0:
                continue
            logits = model(x[:, :-1])  # [b, W - 1, V]: row t predicts byte t + 1
            nats += float(F.cross_entropy(logits.transpose(1, 2), y[:, 1:], reduction="sum", ignore_index=IGNORE_INDEX))
            count += int((y[:, 1:] != IGNORE_INDEX).sum())
    model.train()
    return nats / count / math.log(2), count


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a UTF-8 text file (the last 10%% is held out)")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--layers", type=int, default=5, help="Perceiver AR's self-attention layers + 1")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="ROMEO:")
    p.add_argument("--sample-bytes", type=int, default=600)
    p.add_argument("--out", type=Path, default=HERE / "results" / "clm_baseline.json")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    data = CausalTextDataModule(args.data, max_context=args.context, batch_size=args.batch_size, seed=args.seed)
    data.setup()
    model = TransformerLM(args.context, args.width, args.layers, args.heads)
    params = sum(q.numel() for q in model.parameters())
    opt = build_optimizer(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    schedule = LRSchedule(math.inf, "warmup_cosine", args.warmup, timed=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    budget = args.minutes * 60
    print(f"TransformerLM context {args.context}: {params:,} parameters, {args.minutes} min", flush=True)
    step, spent, epoch, curve = 0, 0.0, 0, []
    while spent < budget:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)  # the data module's EpochSampler: windows seeded by (seed, epoch)
        for batch in loader:
            t0 = time.perf_counter()
            x = batch["input_ids"]  # [B, T + 1]
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.transpose(1, 2), x[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            spent += time.perf_counter() - t0
            schedule.time_fraction = min(spent / budget, 1.0)
            sched.step()
            step += 1
            if step % 100 == 0:
                curve.append((step, round(spent, 1), round(float(loss.detach()) / math.log(2), 4)))
                print(f"step {step} {spent:.0f}s train {float(loss.detach()) / math.log(2):.3f} bits/byte", flush=True)
            if spent >= budget:
                break
        epoch += 1
    t0 = time.perf_counter()
    val_bpb, scored = bits_per_byte(model, data)
    print(f"held-out: {val_bpb:.4f} bits/byte over {scored:,} bytes ({time.perf_counter() - t0:.0f} s)", flush=True)
    prompt = torch.tensor([[b + NUM_SPECIAL for b in args.prompt.encode()]])
    sample = model.generate(prompt, args.sample_bytes, generator=torch.Generator().manual_seed(0))[0]
    text = bytes(max(int(i) - NUM_SPECIAL, 0) for i in sample).decode("utf-8", errors="replace")
    print(text)
    record = {
        "context": args.context,
        "minutes": args.minutes,
        "params": params,
        "steps": step,
        "train_seconds": round(spent, 1),
        "val_bits_per_byte": val_bpb,
        "bytes_scored": scored,
        "unigram_bits_per_byte": data.unigram_bits_per_byte(),
        "curve": curve,
        "sample": text,
        "args": {k: str(v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
    }
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[f"{args.context}@{args.minutes:g}min"] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
