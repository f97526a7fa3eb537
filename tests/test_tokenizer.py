"""Byte tokenizer (official id layout) and whole-word masking collator."""

from __future__ import annotations

import pytest
import torch

from perceiverio import ByteTokenizer, WholeWordMaskingCollator
from perceiverio.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, VOCAB_SIZE

TEXTS = ["hello", "héllo wörld", "emoji 🙂👍🏽", "中文字符", "", "tab\tnew\nline", "\x00\x7f"]


def test_id_layout():
    tok = ByteTokenizer()
    assert (
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
        tok.mask_token_id,
        tok.cls_token_id,
        tok.sep_token_id,
    ) == (0, 1, 2, 3, 4, 5)
    assert tok.vocab_size == VOCAB_SIZE == 262
    assert tok.encode("a") == [ord("a") + 6]
    assert tok.encode("\x00") == [6]
    assert tok.encode("\xff") == [0xC3 + 6, 0xBF + 6]  # UTF-8 bytes, not code points
    ids = tok.encode("€")
    assert ids == [b + 6 for b in "€".encode()] == [0xE2 + 6, 0x82 + 6, 0xAC + 6]
    assert max(tok.encode(bytes(range(128)).decode("ascii"))) == 127 + 6


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert all(6 <= i < 262 for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_decode_drops_special_ids_and_replaces_invalid_utf8():
    tok = ByteTokenizer()
    ids = [CLS_ID, *tok.encode("ab"), MASK_ID, *tok.encode("c"), SEP_ID, PAD_ID, PAD_ID]
    assert tok.decode(ids) == "abc"
    assert tok.decode([0xFF + 6, ord("x") + 6]) == "\ufffdx"
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"  # truncated multi-byte character


@pytest.mark.parametrize("text", [b"hello", bytearray(b"hello"), "hello"])
def test_decode_refuses_raw_bytes_and_strings_instead_of_reading_them_as_ids(text):
    with pytest.raises(TypeError, match=f"ids must be token ids.*got {type(text).__name__}"):
        ByteTokenizer().decode(text)


def test_special_token_wrapping():
    tok = ByteTokenizer()
    assert tok.encode("hi", add_special_tokens=True) == [CLS_ID, ord("h") + 6, ord("i") + 6, SEP_ID]
    assert tok.encode("", add_special_tokens=True) == [CLS_ID, SEP_ID]
    wrapping = ByteTokenizer(add_special_tokens=True)
    assert wrapping.encode("hi") == [CLS_ID, ord("h") + 6, ord("i") + 6, SEP_ID]
    assert wrapping.encode("hi", add_special_tokens=False) == [ord("h") + 6, ord("i") + 6]
    enc = wrapping(["hi", "hello"], padding=True)
    # matches transformers' PerceiverTokenizer: [CLS] text [SEP] then [PAD]
    assert enc.input_ids.tolist() == [[4, 110, 111, 5, 0, 0, 0], [4, 110, 107, 114, 114, 117, 5]]
    assert enc.attention_mask.tolist() == [[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]
    assert wrapping.batch_decode(enc.input_ids) == ["hi", "hello"]


def test_padding_longest_and_max_length():
    tok = ByteTokenizer()
    enc = tok(["a", "abc", ""], padding=True)
    assert enc.input_ids.dtype == torch.long and enc.attention_mask.dtype == torch.long
    assert enc.input_ids.tolist() == [[103, 0, 0], [103, 104, 105], [0, 0, 0]]
    assert enc.attention_mask.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert tok(["a", "abc"], padding="longest").input_ids.tolist() == enc.input_ids[:2].tolist()
    enc = tok(["a", "abc"], padding="max_length", max_length=5)
    assert enc.input_ids.shape == (2, 5)
    assert enc.attention_mask.sum(1).tolist() == [1, 3]
    assert enc.input_ids[0, 1:].eq(PAD_ID).all()
    with pytest.raises(ValueError, match="truncation"):
        tok(["abcdef"], padding="max_length", max_length=4)
    with pytest.raises(ValueError):
        tok(["a"], padding="left")


def test_truncation():
    tok = ByteTokenizer(model_max_length=4)
    enc = tok(["abcdefgh", "ab"], truncation=True, padding=True)
    assert enc.input_ids.tolist() == [[103, 104, 105, 106], [103, 104, 0, 0]]
    assert tok(["abcdefgh"], truncation=True, max_length=2).input_ids.tolist() == [[103, 104]]
    # truncation keeps the trailing [SEP] (as transformers does): [CLS] text[:max_length - 2] [SEP]
    enc = tok(["hello world"], truncation=True, max_length=6, add_special_tokens=True)
    assert enc.input_ids.tolist() == [[4, 110, 107, 114, 114, 5]]
    # short texts are untouched
    assert tok("ab", truncation=True, max_length=6, add_special_tokens=True).input_ids.tolist() == [
        [CLS_ID, 103, 104, SEP_ID]
    ]


def test_unpadded_lists_and_single_text():
    tok = ByteTokenizer()
    enc = tok(["a", "abc"], return_tensors=None)
    assert enc.input_ids == [[103], [103, 104, 105]]
    assert enc.attention_mask == [[1], [1, 1, 1]]
    single = tok("abc")
    assert single.input_ids.tolist() == [[103, 104, 105]]
    assert set(single.keys()) == {"input_ids", "attention_mask"}
    assert single["input_ids"] is single.input_ids


def test_batch_decode():
    tok = ByteTokenizer()
    texts = ["héllo", "🙂", ""]
    enc = tok(texts, padding=True)
    assert tok.batch_decode(enc.input_ids) == texts
    assert tok.batch_decode([tok.encode(t) for t in texts]) == texts


def test_errors():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="vocabulary"):
        tok.decode([262])
    with pytest.raises(ValueError, match="vocabulary"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="padding"):
        tok(["a", "abc"])  # mixed lengths, tensors, no padding
    with pytest.raises(ValueError):
        tok.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        tok.batch_decode(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        tok.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tok(["a"], return_tensors="np")


# ---------------------------------------------------------------------------------------------------- masking


def _words(text: str) -> list[tuple[int, int]]:
    """Byte spans of whitespace-delimited words, computed on the UTF-8 bytes independently of the library."""
    data = text.encode("utf-8")
    spans, start = [], None
    for i, b in enumerate(data):
        if bytes([b]).isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(data)))
    return spans


def _check_whole_word(text: str, input_ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> int:
    """Asserts the masking invariants for one example; returns the number of masked words."""
    original = torch.tensor(ByteTokenizer().encode(text), dtype=torch.long)
    n = len(original)
    assert mask[:n].eq(1).all() and mask[n:].eq(0).all()
    assert labels[n:].eq(-100).all() and input_ids[n:].eq(PAD_ID).all()
    masked = input_ids[:n] == MASK_ID
    # labels hold the original id exactly where masked, -100 elsewhere; unmasked ids are unchanged
    assert torch.equal(labels[:n][masked], original[masked])
    assert labels[:n][~masked].eq(-100).all()
    assert torch.equal(input_ids[:n][~masked], original[~masked])
    covered = torch.zeros(n, dtype=torch.bool)
    count = 0
    for start, end in _words(text):
        covered[start:end] = True
        word = masked[start:end]
        assert word.all() or not word.any(), f"word {text.encode()[start:end]!r} partly masked"
        count += int(word.all())
    assert not masked[~covered].any(), "whitespace was masked"
    return count


def test_masks_whole_words_only():
    texts = ["the quick brown fox jumps over the lazy dog", "héllo  wörld\tand\n🙂 emoji", "   ", "x"]
    g = torch.Generator().manual_seed(0)
    collator = WholeWordMaskingCollator(mask_prob=0.5, generator=g)
    for _ in range(10):
        batch = collator(texts)
        assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape
        assert batch.input_ids.shape[1] == max(len(t.encode()) for t in texts)
        for b, text in enumerate(texts):
            _check_whole_word(text, batch.input_ids[b], batch.labels[b], batch.attention_mask[b])


def test_masked_fraction_of_words():
    words = [f"w{i % 97}x{'y' * (i % 5)}" for i in range(4000)]
    text = " ".join(words)
    collator = WholeWordMaskingCollator(mask_prob=0.15, generator=torch.Generator().manual_seed(123))
    batch = collator([text])
    masked = _check_whole_word(text, batch.input_ids[0], batch.labels[0], batch.attention_mask[0])
    # binomial(4000, 0.15): std 0.0056, so 0.03 is > 5 sigma
    assert abs(masked / len(words) - 0.15) < 0.03


def test_masking_is_reproducible_with_a_seeded_generator():
    text = " ".join(f"word{i}" for i in range(300))
    a = WholeWordMaskingCollator(generator=torch.Generator().manual_seed(7))([text, text])
    b = WholeWordMaskingCollator(generator=torch.Generator().manual_seed(7))([text, text])
    c = WholeWordMaskingCollator(generator=torch.Generator().manual_seed(8))([text, text])
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    assert not torch.equal(a.labels[0], a.labels[1])  # each example draws its own words


def test_mask_prob_edge_cases():
    texts = ["some words here", "and more"]
    none = WholeWordMaskingCollator(mask_prob=0.0)(texts)
    assert none.labels.eq(-100).all()
    assert not none.input_ids.eq(MASK_ID).any()
    everything = WholeWordMaskingCollator(mask_prob=1.0)(texts)
    for b, text in enumerate(texts):
        n_words = _check_whole_word(text, everything.input_ids[b], everything.labels[b], everything.attention_mask[b])
        assert n_words == len(text.split())
    assert everything.input_ids[0, 4] == ord(" ") + 6  # spaces stay
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            WholeWordMaskingCollator(mask_prob=bad)


def test_collator_id_lists_special_tokens_and_max_length():
    tok = ByteTokenizer(add_special_tokens=True)
    collator = WholeWordMaskingCollator(tokenizer=tok, mask_prob=1.0, max_length=6)
    batch = collator(["ab cd ef", "x"])
    assert batch.input_ids.shape == (2, 6)
    # [CLS] and spaces are never masked; with p = 1 every word byte kept by max_length is masked
    row = batch.input_ids[0].tolist()
    assert row[:5] == [CLS_ID, MASK_ID, MASK_ID, ord(" ") + 6, MASK_ID]
    assert row[5] in (MASK_ID, SEP_ID)
    assert batch.input_ids[1].tolist() == [CLS_ID, MASK_ID, SEP_ID, PAD_ID, PAD_ID, PAD_ID]
    assert batch.labels[1].tolist() == [-100, ord("x") + 6, -100, -100, -100, -100]
    ids = WholeWordMaskingCollator(mask_prob=0.0)([[103, 104], [105]])
    assert ids.input_ids.tolist() == [[103, 104], [105, 0]]
    with pytest.raises(ValueError):
        collator([])
