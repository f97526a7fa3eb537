"""Perceiver AR training: the task's loss and bits per byte against a hand computation, the data module's windows
(training text only, seeded, resumable, every validation byte scored once), the checkpoint round trip, and
``perceiverio fit`` + ``perceiverio generate`` + ``test`` on a tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perceiverio import CausalLanguageModel, CausalLanguageModelConfig
from perceiverio.cli import main
from perceiverio.data import CausalTextDataModule
from perceiverio.training import CausalLanguageModelTask
from perceiverio.training.causal import decode_bytes, next_byte_stats

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "clm.yaml"
TEXT = "".join(f"line {i}: the perceiver reads bytes and predicts the next one.\n" for i in range(200))


def _task(**overrides) -> CausalLanguageModelTask:
    torch.manual_seed(0)
    return CausalLanguageModelTask(CausalLanguageModelConfig.tiny(zero_init_output=False, dropout=0.0, **overrides))


def test_loss_and_bits_per_byte_match_a_hand_computation():
    task = _task(max_context=16, num_latents=4).eval()
    ids = torch.randint(6, 262, (2, 17))
    labels = ids.clone()
    labels[1, -2] = -100  # one target not scored
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding of row 1
    ids[1, :5] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        nats, correct, count = next_byte_stats(task, batch)
        logits = task.model(ids[:, :-1], mask[:, :-1]).logits  # [2, 4, V]: rows predict window positions 13 .. 16
    hand, n = 0.0, 0
    for b in range(2):
        for i in range(4):
            target = int(labels[b, 13 + i])
            if target == -100:
                continue
            hand += float(-F.log_softmax(logits[b, i], -1)[target])
            n += 1
    assert n == 7 and int(count) == 7
    assert float(nats) == pytest.approx(hand, rel=1e-5)
    # validation logs the sums' ratio in bits
    task.validation_step(batch, 0)
    assert float(task.val_nats.compute()) / math.log(2) == pytest.approx(hand / n / math.log(2), rel=1e-5)
    # training: the mean
    assert float(task.training_step(batch, 0)) == pytest.approx(hand / n, rel=1e-5)


def test_fresh_zero_init_model_scores_uniform_bytes():
    task = CausalLanguageModelTask(CausalLanguageModelConfig.tiny(max_context=16, num_latents=4))
    ids = torch.randint(6, 262, (3, 17))
    nats, _, count = next_byte_stats(task, {"input_ids": ids})
    assert float(nats / count) == pytest.approx(math.log(262), rel=1e-6)


def _module(tmp_path, **kwargs) -> CausalTextDataModule:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    dm = CausalTextDataModule(path=str(path), **{"max_context": 32, "num_latents": 8, "batch_size": 4, **kwargs})
    dm.setup("fit")
    return dm


def test_training_windows_come_from_the_training_text_seeded_and_resumable(tmp_path):
    dm = _module(tmp_path)
    raw = np.frombuffer(TEXT.encode(), dtype=np.uint8).astype(np.int64) + 6
    cut = round(len(raw) * 0.9)
    assert np.array_equal(dm.train_ids, raw[:cut]) and np.array_equal(dm.val_ids, raw[cut:])
    train = bytes((dm.train_ids - 6).astype(np.uint8)).decode()
    loader = dm.train_dataloader()
    batches = [b for _, b in zip(range(5), loader)]
    for b in batches:
        assert b["input_ids"].shape == (4, 33) and bool(b["attention_mask"].all())
        assert torch.equal(b["labels"], b["input_ids"])
        for row in b["input_ids"]:
            assert bytes((row - 6).tolist()).decode() in train  # never a validation byte
    again = [b for _, b in zip(range(5), _module(tmp_path).train_dataloader())]
    assert all(torch.equal(a["input_ids"], c["input_ids"]) for a, c in zip(batches, again))
    other = next(iter(_module(tmp_path, seed=1).train_dataloader()))
    assert not torch.equal(other["input_ids"], batches[0]["input_ids"])
    resumed = _module(tmp_path).train_dataloader()
    resumed.load_state_dict({"epoch": 0, "batches": 3})
    assert torch.equal(next(iter(resumed))["input_ids"], batches[3]["input_ids"])


def test_validation_windows_score_every_byte_once(tmp_path):
    dm = _module(tmp_path)
    scored = []
    for item in dm._val_items:
        assert item["input_ids"].shape == (33,)
        real = item["attention_mask"].bool()
        labels = item["labels"][-8:][item["labels"][-8:] != -100]  # the latents' targets
        assert bool((item["labels"][~real] == -100).all())
        assert bool((item["labels"][:-8] == -100).all())  # nothing outside the latents' targets is scored
        scored.extend(labels.tolist())
    assert scored == dm.val_ids[1:].tolist()
    assert 0 < dm.unigram_bits_per_byte() < 8


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_context": 0}, "max_context"),
        ({"num_latents": -1}, "num_latents"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_data_contracts(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CausalTextDataModule(**kwargs)


def test_context_longer_than_the_text_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="max_context"):
        _module(tmp_path, max_context=100_000)


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = _task(max_context=32, num_latents=8).model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = CausalLanguageModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    ids = torch.randint(6, 262, (2, 40))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_fit_generate_and_test(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "held_out.txt").write_text(TEXT[:3000])
    small = [
        "--config", str(CONFIG), "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
        "--trainer.limit_val_batches", "2", "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--model.max_context", "64", "--data.max_context", "64", "--model.num_latents", "16",
        "--data.num_latents", "16", "--model.num_self_attention_layers", "1", "--data.batch_size", "4",
    ]  # fmt: skip
    main(["fit", *small])
    model_dir = next((tmp_path / "runs").rglob("model"))
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    capsys.readouterr()
    main(["generate", str(model_dir), "--prompt", "The perceiver", "--max-new-tokens", "20", "--seed", "0"])
    out = capsys.readouterr().out
    assert out.startswith("The perceiver") and len(out.encode("utf-8", "replace")) > len("The perceiver")
    main(["generate", str(model_dir), "--prompt", "The perceiver", "--max-new-tokens", "20", "--seed", "0"])
    assert capsys.readouterr().out == out  # seeded
    main(["test", *small, "--ckpt_path", str(ckpt), "--data.test_path", str(tmp_path / "held_out.txt")])
    assert "test/bits_per_byte" in capsys.readouterr().out
    main(["validate", *small, "--ckpt_path", str(ckpt)])
    assert "val/bits_per_byte" in capsys.readouterr().out


def test_data_windows_wider_than_the_latents_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "fit", "--config", str(CONFIG), "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path),
        "--model.max_context", "64", "--data.max_context", "64", "--model.num_latents", "8",
        "--data.num_latents", "16", "--model.num_self_attention_layers", "1", "--data.batch_size", "4",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = str(e.value.code)
    assert "data.num_latents (16)" in message and "model.num_latents (8)" in message and "\n" not in message


def test_generate_errors_are_one_line(tmp_path, capsys):
    CausalLanguageModel(CausalLanguageModelConfig.tiny()).save_pretrained(tmp_path / "m")
    for argv, name in [
        (["generate", str(tmp_path / "nope"), "--prompt", "x"], "MODEL_DIR"),
        (["generate", str(tmp_path / "m"), "--prompt", ""], "--prompt"),
        (["generate", str(tmp_path / "m"), "--prompt", "x", "--top-p", "2"], "--top-p"),
        (["generate", str(tmp_path / "m"), "--prompt", "x", "--max-new-tokens", "-1"], "--max-new-tokens"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        message = str(e.value.code)
        assert "\n" not in message and message.startswith("perceiverio generate") and name in message, message


def test_predict_step_continues_each_prompt():
    task = _task(max_context=32, num_latents=8).eval()
    task.generate_tokens, task.generate_temperature = 5, 0.0
    ids = torch.tensor([[0, 0, 6 + ord("a"), 6 + ord("b")], [6 + ord("x"), 6 + ord("y"), 6 + ord("z"), 6 + ord("w")]])
    mask = (ids != 0).long()
    out = task.predict_step({"input_ids": ids, "attention_mask": mask}, 0)
    assert out["kind"] == "generation" and out["text"][0].startswith("ab") and out["text"][1].startswith("xyzw")
    greedy = task.model.generate(ids[1], 5, temperature=0.0)
    assert out["text"][1] == decode_bytes(greedy)
