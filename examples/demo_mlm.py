"""Train a tiny byte-level Perceiver IO masked language model on CPU, then fill in a masked word.

The text is the Python standard library's own reference prose (``pydoc_data.topics``, ~465k characters), so the
demo needs no download. It trains for a fixed time budget (default 120 s), printing the training loss as it falls,
then reports masked-byte accuracy on held-out text next to the unigram baseline (always predicting the most frequent
byte), and finally asks the model to fill in masked words.

    python examples/demo_mlm.py [--seconds 120] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter
from pydoc_data.topics import topics

import torch

from perceiverio import (
    ByteTokenizer,
    DecoderConfig,
    EncoderConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    WholeWordMaskingCollator,
)

SEQ_LEN = 128


def corpus() -> tuple[str, str]:
    """Train / validation split of the pydoc topics (by topic, so validation text is unseen)."""
    names = sorted(topics)
    random.Random(0).shuffle(names)
    cut = int(0.9 * len(names))

    def join(keys: list[str]) -> str:
        return "\n\n".join(" ".join(topics[k].split()) for k in keys)

    return join(names[:cut]), join(names[cut:])


def windows(ids: list[int], n: int, rng: random.Random) -> list[list[int]]:
    """n random SEQ_LEN windows that start at a word boundary."""
    out = []
    for _ in range(n):
        i = rng.randrange(0, len(ids) - SEQ_LEN - 1)
        while i > 0 and ids[i - 1] != ord(" ") + 6:
            i -= 1
        out.append(ids[i : i + SEQ_LEN])
    return out


def model_config() -> MaskedLanguageModelConfig:
    return MaskedLanguageModelConfig(
        max_seq_len=SEQ_LEN,
        num_input_channels=128,
        encoder=EncoderConfig(
            num_latents=64,
            num_latent_channels=192,
            num_cross_attention_heads=4,
            num_self_attention_heads=4,
            num_self_attends_per_block=4,
            qk_channels=96,
            v_channels=192,
        ),
        decoder=DecoderConfig(num_query_channels=128, num_heads=4, qk_channels=96, v_channels=128),
        embedding_init_scale=0.02,
    )


@torch.no_grad()
def evaluate(model, batches) -> tuple[float, float]:
    """(masked-byte accuracy, bits per masked byte) on pre-collated validation batches."""
    model.eval()
    correct = total = 0
    nll = 0.0
    for batch in batches:
        out = model(batch.input_ids, batch.attention_mask, labels=batch.labels, decode_labeled_only=True)
        targets = batch.labels.gather(1, out.positions)
        keep = targets != -100
        correct += int((out.logits.argmax(-1)[keep] == targets[keep]).sum())
        n = int(keep.sum())
        total += n
        nll += float(out.loss) * n
    model.train()
    return correct / max(total, 1), nll / max(total, 1) / math.log(2)


def fill_mask(model, tok: ByteTokenizer, text: str, word: str) -> str:
    """Mask every byte of ``word`` in ``text`` and let the model predict them."""
    start = text.index(word)
    ids = tok(text).input_ids
    lo, hi = len(text[:start].encode()), len(text[:start].encode()) + len(word.encode())
    ids[0, lo:hi] = tok.mask_token_id
    with torch.no_grad():
        logits = model(ids).logits[0]
    filled = ids[0].clone()
    filled[lo:hi] = logits[lo:hi].argmax(-1)
    return tok.decode(filled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok = ByteTokenizer()
    train_text, val_text = corpus()
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    print(f"pydoc_data.topics: {len(train_ids):,} training bytes, {len(val_ids):,} validation bytes")

    collate = WholeWordMaskingCollator(tok, mask_prob=0.15, generator=torch.Generator().manual_seed(args.seed))
    val_collate = WholeWordMaskingCollator(tok, mask_prob=0.15, generator=torch.Generator().manual_seed(1234))
    val_batches = [val_collate(windows(val_ids, 64, rng)) for _ in range(4)]
    masked = torch.cat([b.labels[b.labels != -100] for b in val_batches])
    most_common, count = Counter(masked.tolist()).most_common(1)[0]
    baseline = count / len(masked)

    model = MaskedLanguageModel(model_config())
    print(f"model: {model.num_parameters():,} parameters")
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    warmup = 100

    step, start, smoothed = 0, time.perf_counter(), None
    while (elapsed := time.perf_counter() - start) < args.seconds:
        lr_scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(elapsed / args.seconds, 1.0)))
        for group in optim.param_groups:
            group["lr"] = 2e-3 * lr_scale
        batch = collate(windows(train_ids, args.batch_size, rng))
        loss = model(batch.input_ids, batch.attention_mask, labels=batch.labels, decode_labeled_only=True).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        value = loss.item()
        smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
        if step % 50 == 0:
            print(f"step {step:5d}  {elapsed:6.1f}s  train loss {smoothed:.3f}")
        step += 1

    acc, bpb = evaluate(model, val_batches)
    print(f"\nafter {step} steps ({time.perf_counter() - start:.0f}s):")
    print(f"  validation masked-byte accuracy {100 * acc:.1f}%  ({bpb:.2f} bits per masked byte)")
    print(f"  unigram baseline (always {tok.decode([most_common])!r}) {100 * baseline:.1f}%")
    model.eval()
    for text, word in [
        ("The return statement leaves the current function call.", "function"),
        ("A for loop iterates over the items of a sequence.", "sequence"),
    ]:
        masked = text.replace(word, "[" + "_" * len(word) + "]")
        print(f"  fill-mask: {masked}\n          -> {fill_mask(model, tok, text, word)}")


if __name__ == "__main__":
    main()
