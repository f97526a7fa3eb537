"""Masking for byte MLM pre-training: whole words (paper §4.1: each whitespace-delimited word is masked with p) or
single bytes (BERT-style, each byte masked with p: an easier task that small models learn on a CPU budget)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import MASK_ID, NUM_SPECIAL, PAD_ID, BatchEncoding, ByteTokenizer, as_token_ids

_WHITESPACE = {b + NUM_SPECIAL for b in b" \t\n\r\x0b\x0c"}


def word_spans(ids: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` spans of maximal runs of non-whitespace byte ids (special ids end a word)."""
    spans, start = [], None
    for i, t in enumerate(ids):
        inside = t >= NUM_SPECIAL and t not in _WHITESPACE
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(ids)))
    return spans


class WholeWordMaskingCollator:
    """Texts (or id lists) -> padded ``BatchEncoding`` whose masked words are ``[MASK]`` in ``input_ids`` and
    the original ids in ``labels`` (-100 everywhere else, padding included).

    Args:
        mask_prob: probability that a word is masked (0.15 in the paper).
        max_length: truncate each example to this many ids.
        generator: a ``torch.Generator`` for reproducible masks.
    """

    def __init__(
        self,
        tokenizer: ByteTokenizer | None = None,
        mask_prob: float = 0.15,
        max_length: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(mask_prob, bool) or not isinstance(mask_prob, (int, float)) or not 0.0 <= mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be a probability in [0, 1], got {mask_prob!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        self.tokenizer = tokenizer or ByteTokenizer()
        self.mask_prob = mask_prob
        self.max_length = max_length
        self.generator = generator

    def spans(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """The ``[start, end)`` units that are masked together (here: words)."""
        return word_spans(ids)

    def __call__(self, examples: Sequence[str] | Sequence[Sequence[int]]) -> BatchEncoding:
        if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or len(examples) == 0:
            raise ValueError(
                f"examples must be a non-empty list of texts or of token-id lists, got "
                f"{type(examples).__name__ if not isinstance(examples, Sequence) else repr(examples)[:40]}"
            )
        seqs = [self.tokenizer.encode(e) if isinstance(e, str) else as_token_ids(e, "examples") for e in examples]
        if self.max_length is not None:
            seqs = [s[: self.max_length] for s in seqs]
        length = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        labels = torch.full((len(seqs), length), IGNORE_INDEX, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[b, : len(s)] = 1
            spans = self.spans(s)
            if not spans:
                continue
            draws = torch.rand(len(spans), generator=self.generator) < self.mask_prob
            for (start, end), hit in zip(spans, draws.tolist()):
                if hit:
                    labels[b, start:end] = ids[b, start:end]
                    ids[b, start:end] = MASK_ID
        return BatchEncoding(ids, mask, labels)


class ByteMaskingCollator(WholeWordMaskingCollator):
    """Like ``WholeWordMaskingCollator``, but every byte (whitespace included, special ids excluded) is masked on
    its own with ``mask_prob``."""

    def spans(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, t in enumerate(ids) if t >= NUM_SPECIAL]


MASKING_COLLATORS = {"whole_word": WholeWordMaskingCollator, "byte": ByteMaskingCollator}
