"""UTF-8 byte tokenizer with the official Perceiver IO id layout.

Ids: PAD 0, BOS 1, EOS 2, MASK 3, CLS 4, SEP 5, and UTF-8 byte b -> b + 6 (vocabulary 262). Decoding drops the
special ids and decodes UTF-8 with replacement characters, exactly like DeepMind's ``BytesTokenizer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

PAD_ID, BOS_ID, EOS_ID, MASK_ID, CLS_ID, SEP_ID = range(6)
NUM_SPECIAL = 6
VOCAB_SIZE = 256 + NUM_SPECIAL


@dataclass
class BatchEncoding:
    """``input_ids`` ``[B, L]`` (long) and ``attention_mask`` ``[B, L]`` (long, 1 = token, 0 = padding);
    ``labels`` ``[B, L]`` (-100 = ignored) when produced by a masking collator. Lists when not padded."""

    input_ids: torch.Tensor | list[list[int]]
    attention_mask: torch.Tensor | list[list[int]]
    labels: torch.Tensor | None = None

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [k for k in ("input_ids", "attention_mask", "labels") if getattr(self, k) is not None]

    def to(self, device: torch.device | str) -> BatchEncoding:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.to(device) if isinstance(t, torch.Tensor) else t

        return BatchEncoding(move(self.input_ids), move(self.attention_mask), move(self.labels))


def as_token_ids(ids: object, name: str = "ids") -> list[int]:
    """A sequence of token ids (a list or tuple of ints, or a rank-1 integer tensor) as a list of ints, each in
    ``[0, VOCAB_SIZE)``; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(ids, (bytes, bytearray, str)):  # iterable, but not token ids: b"hello" would read as ids 104...
        raise TypeError(
            f"{name} must be token ids (a list of ints or a rank-1 tensor), got {type(ids).__name__}; "
            "raw UTF-8 bytes are text already: use bytes.decode('utf-8')"
        )
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(
                f"{name} must be a rank-1 integer tensor of token ids, got dtype {ids.dtype} and shape "
                f"{tuple(ids.shape)}"
            )
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)):
        raise TypeError(f"{name} must be token ids (a list of ints or a rank-1 tensor), got {type(ids).__name__}")
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{name} must hold ints (token ids), got an element of type {type(i).__name__}")
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"{name} holds token id {int(i)}, outside the vocabulary [0, {VOCAB_SIZE})")
        out.append(int(i))
    return out


class ByteTokenizer:
    """Bytes in, ids out. ``add_special_tokens=True`` wraps each text as ``[CLS] text [SEP]`` (transformers)."""

    pad_token_id = PAD_ID
    bos_token_id = BOS_ID
    eos_token_id = EOS_ID
    mask_token_id = MASK_ID
    cls_token_id = CLS_ID
    sep_token_id = SEP_ID
    vocab_size = VOCAB_SIZE

    def __init__(self, add_special_tokens: bool = False, model_max_length: int = 2048) -> None:
        self.add_special_tokens = add_special_tokens
        self.model_max_length = model_max_length

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids = [b + NUM_SPECIAL for b in text.encode("utf-8")]
        wrap = self.add_special_tokens if add_special_tokens is None else add_special_tokens
        return [CLS_ID, *ids, SEP_ID] if wrap else ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids -> text; special ids (< 6) are dropped, invalid UTF-8 becomes U+FFFD."""
        out = bytearray(i - NUM_SPECIAL for i in as_token_ids(ids, "ids") if i >= NUM_SPECIAL)
        return out.decode("utf-8", errors="replace")

    def batch_decode(self, batch: Sequence[Sequence[int]] | torch.Tensor) -> list[str]:
        if isinstance(batch, torch.Tensor) and batch.dim() != 2:
            raise ValueError(f"batch_decode takes ids of shape [B, L], got shape {tuple(batch.shape)}")
        return [self.decode(row) for row in batch]

    def __call__(
        self,
        texts: str | Sequence[str],
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchEncoding:
        """Encode a text or a batch of texts.

        padding: ``False``, ``True``/``"longest"`` (pad to the longest text) or ``"max_length"``.
        truncation: cut each text to ``max_length`` ids (default: ``model_max_length``).
        return_tensors: ``"pt"`` for tensors (needs equal lengths, i.e. padding for mixed lengths) or ``None``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            got = (
                type(texts).__name__
                if not isinstance(texts, (list, tuple))
                else f"{type(texts).__name__} of " + (", ".join(sorted({type(t).__name__ for t in texts})) or "nothing")
            )
            raise TypeError(f"texts must be a str or a non-empty list of str, got {got}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        for name, flag in (("truncation", truncation), ("add_special_tokens", add_special_tokens)):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if not isinstance(padding, (bool, str)) or padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        limit = max_length if max_length is not None else self.model_max_length
        seqs = [self.encode(t, add_special_tokens) for t in texts]
        if truncation:  # a wrapped text keeps its [SEP] (transformers): [CLS] text[:limit - 2] [SEP]
            wrap = self.add_special_tokens if add_special_tokens is None else add_special_tokens
            seqs = [s[: limit - 1] + [SEP_ID] if wrap and len(s) > limit >= 2 else s[:limit] for s in seqs]
        if padding == "max_length":
            target = limit
        elif padding in (True, "longest"):
            target = max((len(s) for s in seqs), default=0)
        else:
            target = None
        if target is not None:
            too_long = [len(s) for s in seqs if len(s) > target]
            if too_long:
                raise ValueError(f"a text has {max(too_long)} ids, more than max_length={target}; pass truncation=True")
            masks = [[1] * len(s) + [0] * (target - len(s)) for s in seqs]
            seqs = [s + [PAD_ID] * (target - len(s)) for s in seqs]
        else:
            masks = [[1] * len(s) for s in seqs]
        if return_tensors is None:
            return BatchEncoding(seqs, masks)
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        if len({len(s) for s in seqs}) > 1:
            raise ValueError("texts have different lengths; pass padding=True to return tensors")
        return BatchEncoding(torch.tensor(seqs, dtype=torch.long), torch.tensor(masks, dtype=torch.long))
