"""Train a small Perceiver AR on a text file (or the standard library's embedded prose) and sample from it.

A plain PyTorch loop over :class:`perceiverio.data.CausalTextDataModule` windows: the model reads ``max_context``
bytes, its ``num_latents`` latents (the last positions) predict their next bytes. After the time budget it scores
the held-out tail of the text (bits per byte, next to the unigram baseline), then generates with the key/value cache
and, for comparison, without it (same tokens, different cost).

    python examples/perceiver_ar_text.py                                   # 2 minutes on the embedded text
    python examples/perceiver_ar_text.py --path ../shared/data/text/tinyshakespeare.txt --prompt "ROMEO:"

For the full recipes use the command line (``perceiverio fit --config configs/clm-shakespeare.yaml ...``,
docs/generation.md).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from perceiverio import ByteTokenizer, CausalLanguageModel, CausalLanguageModelConfig
from perceiverio.data import CausalTextDataModule


def held_out_bits_per_byte(model: CausalLanguageModel, data: CausalTextDataModule) -> float:
    """Bits per byte over every held-out byte (each scored once, from up to max_context bytes before it)."""
    model.eval()
    nats, count = 0.0, 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            ids, mask = batch["input_ids"], batch["attention_mask"]
            logits = model(ids[:, :-1], mask[:, :-1]).logits  # [B, N, V]: the last N positions predict
            targets = batch["labels"][:, 1:][:, -logits.shape[1] :]  # [B, N], -100 where not scored
            nats += float(F.cross_entropy(logits.transpose(1, 2), targets, reduction="sum"))
            count += int((targets != -100).sum())
    model.train()
    return nats / count / math.log(2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default=None, help="a UTF-8 text file or folder (default: pydoc_data.topics)")
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (if sooner)")
    p.add_argument("--max-context", type=int, default=256)
    p.add_argument("--num-latents", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--new-bytes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    config = CausalLanguageModelConfig(
        max_context=args.max_context,
        num_latents=args.num_latents,
        num_input_channels=args.width,
        num_latent_channels=args.width,
        num_cross_attention_heads=4,
        num_self_attention_heads=4,
        num_self_attention_layers=args.layers,
        dropout=0.0,
    )
    model = CausalLanguageModel(config)
    data = CausalTextDataModule(args.path, args.max_context, args.num_latents, batch_size=16, seed=args.seed)
    data.setup()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    print(f"{sum(q.numel() for q in model.parameters()):,} parameters; training for {args.seconds:.0f} s")

    start, step, epoch = time.perf_counter(), 0, 0
    while time.perf_counter() - start < args.seconds and step != args.max_steps:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for batch in loader:  # windows of max_context + 1 bytes
            x = batch["input_ids"]  # [B, M + 1]
            logits = model(x[:, :-1]).logits  # [B, N, V]: the latents, the last N of the M positions
            loss = F.cross_entropy(logits.transpose(1, 2), x[:, 1:][:, -logits.shape[1] :])  # each its next byte
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                print(
                    f"step {step:5d}  {time.perf_counter() - start:5.0f} s  {loss.item() / math.log(2):.3f} bits/byte"
                )
            if time.perf_counter() - start >= args.seconds or step == args.max_steps:
                break
        epoch += 1

    bpb = held_out_bits_per_byte(model, data)
    print(f"held out: {bpb:.3f} bits per byte (unigram baseline {data.unigram_bits_per_byte():.3f})")

    tokenizer = ByteTokenizer()
    prompt = torch.tensor(tokenizer.encode(args.prompt))
    model.eval()
    timings = {}
    for cache in (True, False):
        t0 = time.perf_counter()
        out = model.generate(prompt, args.new_bytes, temperature=0.8, top_k=40, seed=args.seed, use_cache=cache)
        timings[cache] = (time.perf_counter() - t0) / args.new_bytes * 1000
        if cache:
            text = tokenizer.decode(out)
        else:
            assert tokenizer.decode(out) == text  # the cache changes the cost, not the tokens
    print(f"generation: {timings[True]:.1f} ms/byte cached, {timings[False]:.1f} ms/byte uncached\n")
    print(text)


if __name__ == "__main__":
    main()
