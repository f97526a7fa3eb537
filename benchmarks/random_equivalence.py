"""Random tiny transformers Perceivers (configs drawn at random, not the ones in the test suite) against their
conversion by ``from_transformers``: the largest relative logit difference per model, float32, padded batches.

    .venv/bin/python benchmarks/random_equivalence.py --models 40 --seed 1

Prints one line per model and a summary; exits 1 if any difference exceeds --tol (1e-5 of the largest logit).
"""

from __future__ import annotations

import argparse
import random

import torch
import transformers

from perceiverio import MaskedLanguageModel, SequenceClassifier


def random_config(rng: random.Random) -> dict:
    heads = rng.choice([1, 2, 4])
    d_latents = heads * rng.choice([4, 8])
    d_model = rng.choice([8, 12, 16, 24])
    qk = rng.choice([None, heads * rng.choice([2, 4])])
    return dict(
        num_latents=rng.randint(1, 12),
        d_latents=d_latents,
        d_model=d_model,
        num_blocks=rng.randint(1, 3),
        num_self_attends_per_block=rng.randint(1, 3),
        num_self_attention_heads=heads,
        num_cross_attention_heads=rng.choice([h for h in (1, 2, 4) if d_model % h == 0 and (qk or d_model) % h == 0]),
        qk_channels=qk,
        v_channels=d_latents if qk is not None else None,
        cross_attention_widening_factor=rng.randint(1, 3),
        self_attention_widening_factor=rng.randint(1, 3),
        use_query_residual=rng.random() < 0.5,
        hidden_act=rng.choice(["gelu", "gelu_new"]),
        cross_attention_shape_for_attention=rng.choice(["kv", "q"]),
        vocab_size=rng.randint(8, 40),
        max_position_embeddings=rng.randint(12, 40),
        num_labels=rng.randint(1, 5),
    )


def randomize(model: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = p.shape[-1] ** -0.5 if p.dim() >= 2 else 0.2
            p.copy_(
                torch.randn(p.shape, generator=gen) * scale
                + (1.0 if "layernorm" in name and p.dim() == 1 and name.endswith("weight") else 0.0)
            )
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    rng, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    worst = 0.0
    for i in range(args.models):
        kwargs = random_config(rng)
        try:
            config = transformers.PerceiverConfig(**kwargs)
            hf_cls, ours_cls = rng.choice(
                [
                    (transformers.PerceiverForMaskedLM, MaskedLanguageModel),
                    (transformers.PerceiverForSequenceClassification, SequenceClassifier),
                ]
            )
            hf = randomize(hf_cls(config), gen)
        except Exception as e:  # a config transformers itself rejects (head counts that do not divide)
            print(f"{i:3d} skipped by transformers: {type(e).__name__}: {e}")
            continue
        ours = ours_cls.from_transformers(hf)
        b, length = 3, rng.randint(2, min(12, config.max_position_embeddings))
        ids = torch.randint(0, config.vocab_size, (b, length), generator=gen)
        mask = (torch.arange(length) < torch.tensor([length, max(1, length - 3), 1])[:, None]).long()
        with torch.no_grad():
            ref = hf(inputs=ids, attention_mask=mask).logits
            got = ours(ids, mask).logits
        ref = ref[:, :length] if ref.dim() == 3 else ref
        diff = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        worst = max(worst, diff)
        print(f"{i:3d} {hf_cls.__name__:36s} rel diff {diff:.2e}  {kwargs}")
    print(f"worst relative difference over {args.models} random models: {worst:.2e} (tolerance {args.tol:g})")
    raise SystemExit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
