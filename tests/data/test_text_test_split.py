"""Masked-LM data has a test split: ``test_path`` text tiled once with fixed masks, so ``perceiverio test`` reports
masked-byte accuracy on text the model never trained on; without it, ``test`` says what to give."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import cpu_trainer

from perceiverio.data import TextDataModule
from perceiverio.tasks import MaskedLanguageModelConfig
from perceiverio.tokenizer import NUM_SPECIAL
from perceiverio.training import MaskedLanguageModelTask, OptimizerConfig

HELD_OUT = "The quick brown fox jumps over the lazy dog. " * 12 + "Pack my box with five dozen liquor jugs.\n"


def _unmasked_bytes(batches) -> bytes:
    """The original bytes of every window, in order: the label where a byte was masked, the input elsewhere."""
    out = bytearray()
    for batch in batches:
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            original = torch.where(labels != -100, labels, ids)[mask.bool()]
            out += bytes((original - NUM_SPECIAL).tolist())
    return bytes(out)


def test_test_windows_cover_the_test_text_once_with_fixed_masks(tmp_path):
    (tmp_path / "held_out.txt").write_text(HELD_OUT)
    data = TextDataModule(seq_len=64, batch_size=4, test_path=str(tmp_path / "held_out.txt"))
    batches = list(data.test_dataloader())
    assert b"".join(_unmasked_bytes(batches).split()) == b"".join(HELD_OUT.encode().split())
    masked = sum(int((b["labels"] != -100).sum()) for b in batches)
    assert 0 < masked < len(HELD_OUT)
    again = list(TextDataModule(seq_len=64, batch_size=4, test_path=str(tmp_path / "held_out.txt")).test_dataloader())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))


def test_no_test_path_names_the_option_and_a_missing_one_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="test_path"):
        TextDataModule(seq_len=64).test_dataloader()
    with pytest.raises(ValueError, match="does not exist"):
        TextDataModule(seq_len=64, test_path=str(tmp_path / "missing.txt"))


def test_trainer_test_logs_masked_byte_metrics_on_the_test_text(tmp_path):
    (tmp_path / "held_out.txt").write_text(HELD_OUT)
    torch.manual_seed(0)
    config = MaskedLanguageModelConfig.tiny(max_seq_len=64)
    module = MaskedLanguageModelTask(config, optimizer=OptimizerConfig(lr=1e-3, schedule="constant"))
    data = TextDataModule(seq_len=64, batch_size=4, test_path=str(tmp_path / "held_out.txt"))
    (results,) = cpu_trainer().test(module, datamodule=data, verbose=False)
    assert {"test/masked_byte_acc", "test/bits_per_byte", "test/loss"} <= set(results)
    assert results["test/bits_per_byte"] == pytest.approx(results["test/loss"] / math.log(2), rel=1e-5)
    correct = total = 0  # the accuracy by hand: argmax of the full logits at every masked byte
    with torch.no_grad():
        for batch in data.test_dataloader():
            logits = module.model(batch["input_ids"], batch["attention_mask"]).logits  # [B, L, V]
            masked = batch["labels"] != -100
            correct += int((logits.argmax(-1)[masked] == batch["labels"][masked]).sum())
            total += int(masked.sum())
    assert results["test/masked_byte_acc"] == pytest.approx(correct / total, abs=1e-6)
