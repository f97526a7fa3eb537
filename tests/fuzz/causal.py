"""The entry points of Perceiver AR (``CausalLanguageModel.forward`` and ``.generate``) for the fuzz cases."""

from __future__ import annotations

import functools

import torch
from fuzz.cases import Arg, EntryPoint

B = 2
V = 262


@functools.cache
def _model() -> torch.nn.Module:
    import perceiverio as p

    torch.manual_seed(0)
    config = p.CausalLanguageModelConfig.tiny(max_context=16, num_latents=4, zero_init_output=False)
    return p.CausalLanguageModel(config).eval()


def _ids(length: int, ignore: bool = False):
    def make(rng: torch.Generator) -> torch.Tensor:
        ids = torch.randint(0, V, (B, length), generator=rng)
        if ignore:
            ids[torch.rand(B, length, generator=rng) < 0.5] = -100
        return ids

    return make


def _left_padding(rng: torch.Generator) -> torch.Tensor:
    mask = torch.ones(B, 12, dtype=torch.long)
    mask[:, : int(torch.randint(0, 6, (), generator=rng))] = 0
    return mask


def _const(value):
    return lambda rng: value


def _forward(input_ids, attention_mask, labels):
    return _model()(input_ids, attention_mask, labels=labels)


def _generate(prompt_ids, max_new_tokens, temperature, top_k, top_p, stop_bytes, seed):
    return _model().generate(
        prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop_bytes=stop_bytes, seed=seed
    )


CAUSAL_ENTRY_POINTS = [
    EntryPoint(
        "CausalLanguageModel.forward",
        _forward,
        {
            "input_ids": Arg(_ids(12), kind="ids", high=V, names=("input_ids",)),
            "attention_mask": Arg(_left_padding, kind="mask", optional=True, names=("attention_mask",)),
            "labels": Arg(_ids(12, ignore=True), kind="ids", high=V, optional=True, names=("labels",)),
        },
    ),
    EntryPoint(
        "CausalLanguageModel.generate",
        _generate,
        {
            "prompt_ids": Arg(_ids(5), kind="ids", high=V, names=("prompt_ids",)),
            "max_new_tokens": Arg(_const(14), kind="int", names=("max_new_tokens",), bad=(-1, 2.5, "8", None)),
            "temperature": Arg(
                _const(0.8),
                kind="value",
                names=("temperature",),
                bad=(-1.0, float("nan"), float("inf"), "hot", None, True),
            ),
            "top_k": Arg(_const(20), kind="int", optional=True, names=("top_k",), bad=(0, -3, 2.5, "8")),
            "top_p": Arg(_const(0.9), kind="value", optional=True, names=("top_p",), bad=(0.0, 1.5, -0.1, "x")),
            "stop_bytes": Arg(
                _const(b"\n"), kind="value", optional=True, names=("stop_bytes",), bad=("\n", b"", 10, [10])
            ),
            "seed": Arg(_const(0), kind="int", optional=True, names=("seed",), bad=(2.5, "1", True)),
        },
    ),
]
