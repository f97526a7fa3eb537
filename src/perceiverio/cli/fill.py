"""``perceiverio fill-mask MODEL_DIR --text ...``: a masked language model fills masked bytes of a text."""

from __future__ import annotations

import argparse
from pathlib import Path


def fill_mask(model, text: str, word: str | None = None, mask_char: str | None = None) -> str:
    """Mask bytes of ``text`` and return it with the model's fillings: every byte of the first occurrence of
    ``word`` (whole-word masking), or every occurrence of the one-byte character ``mask_char`` (byte masking)."""
    import torch

    from ..tokenizer import ByteTokenizer

    if (word is None) == (mask_char is None):
        raise ValueError("give exactly one of --word (mask a whole word) or --mask-char (mask single bytes)")
    tok = ByteTokenizer()
    ids = tok(text).input_ids
    if word is not None:
        if not word or word not in text:
            raise ValueError(f"{word!r} does not occur in the text")
        start = len(text[: text.index(word)].encode())
        positions = torch.arange(start, start + len(word.encode()))
    else:
        if len(mask_char.encode()) != 1:
            raise ValueError(f"--mask-char must be one single-byte character such as '_', got {mask_char!r}")
        raw = torch.tensor(list(text.encode()))
        positions = torch.nonzero(raw == mask_char.encode()[0]).flatten()
        if positions.numel() == 0:
            raise ValueError(f"the text has no {mask_char!r} to fill")
    ids[0, positions] = tok.mask_token_id
    with torch.no_grad():
        logits = model(ids, positions=positions).logits[0]  # [K, V]
    filled = ids[0].clone()
    filled[positions] = logits.argmax(-1)
    return tok.decode(filled)


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="perceiverio fill-mask", description="Mask bytes of a text and print the model's filling."
    )
    parser.add_argument("model", type=Path, help="a folder with model.safetensors + config.json")
    parser.add_argument("--text", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--word", help="mask every byte of this word (its first occurrence)")
    what.add_argument("--mask-char", help="mask every occurrence of this one-byte character, e.g. '_'")
    args = parser.parse_args(argv)
    from ..tasks.language import MaskedLanguageModel

    try:
        model = MaskedLanguageModel.from_pretrained(args.model)
        size = len(args.text.encode("utf-8"))
        if size > model.config.max_seq_len:
            raise ValueError(f"--text has {size} bytes, more than the model's max_seq_len {model.config.max_seq_len}")
        print(fill_mask(model, args.text, args.word, args.mask_char))
    except ValueError as e:
        raise SystemExit(f"perceiverio fill-mask: {e}") from None
