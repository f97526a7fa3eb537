"""``perceiverio generate MODEL_DIR --prompt TEXT``: a causal (Perceiver AR) byte model continues a text.

    perceiverio generate MODEL_DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
        [--seed S] [--stop TEXT]

Prints the prompt and its continuation (UTF-8, invalid bytes replaced). ``--temperature 0`` is greedy;
``--stop`` ends the text after any byte of TEXT (``\\n`` and ``\\t`` are read as newline and tab).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

MAX_NEW_TOKENS = 1_000_000
#: the model's argument names -> this command's options (so an error names the option the user typed)
OPTIONS = {
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "stop_bytes": "--stop",
    "seed": "--seed",
}


def generate_text(
    model,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: str | None = None,
) -> str:
    """``prompt`` followed by up to ``max_new_tokens`` bytes sampled from ``model`` (a
    :class:`~perceiverio.tasks.causal.CausalLanguageModel`), decoded as UTF-8 with invalid bytes replaced."""
    import torch

    from ..tokenizer import NUM_SPECIAL

    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"--prompt must be a non-empty text, got {prompt!r}")
    stop_bytes = None
    if stop is not None:
        if not isinstance(stop, str) or not stop:
            raise ValueError(f"--stop must be a non-empty text, got {stop!r}")
        stop_bytes = stop.replace("\\n", "\n").replace("\\t", "\t").encode("utf-8")
    ids = torch.tensor(list(prompt.encode("utf-8")), dtype=torch.long) + NUM_SPECIAL  # [P]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens, temperature, top_k, top_p, stop_bytes, seed)
    values = [int(i) - NUM_SPECIAL for i in out.tolist() if int(i) >= NUM_SPECIAL]
    return bytes(values).decode("utf-8", errors="replace")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="perceiverio generate", description="Continue a text with a causal (Perceiver AR) byte model."
    )
    parser.add_argument("model", type=Path, help="a folder with model.safetensors + config.json (a trained export)")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--max-new-tokens", type=_int, default=200, help="bytes to generate at most (200)")
    parser.add_argument("--temperature", type=_float, default=0.8, help="0: greedy (0.8)")
    parser.add_argument("--top-k", type=_int, default=None, help="sample from the k most likely bytes")
    parser.add_argument("--top-p", type=_float, default=None, help="nucleus sampling: probability mass kept")
    parser.add_argument("--seed", type=_int, default=None, help="reproducible sampling")
    parser.add_argument("--stop", default=None, help="end after any byte of this text, e.g. '\\n'")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            raise SystemExit(1) from None
        raise
    from ..tasks.causal import CausalLanguageModel

    try:
        if not args.model.is_dir():
            raise FileNotFoundError(f"MODEL_DIR {str(args.model)!r} is not a folder (expected an exported model)")
        if not 0 <= args.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"--max-new-tokens must be in [0, {MAX_NEW_TOKENS}], got {args.max_new_tokens}")
        try:
            model = CausalLanguageModel.from_pretrained(args.model)
        except ValueError as e:
            raise ValueError(f"MODEL_DIR {str(args.model)!r}: {e}") from None
        text = generate_text(
            model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, args.stop
        )
    except (ValueError, TypeError, FileNotFoundError) as e:
        message = str(e)
        name = next((n for n in OPTIONS if message.startswith(n + " ")), None)
        if name is not None:
            message = OPTIONS[name] + message[len(name) :]
        raise SystemExit(f"perceiverio generate: {message}") from None
    print(text)
