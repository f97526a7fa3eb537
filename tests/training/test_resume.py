"""Exact resume: a run resumed from a mid-epoch checkpoint, even of a killed process, ends with the weights of the
uninterrupted run, bit for bit (same batches, masks, augmentation draws and dropout)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import cpu_trainer
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from perceiverio.core.config import EncoderConfig
from perceiverio.data.sampling import ListDataset, ResumableLoader, loader
from perceiverio.tasks import SequenceClassifierConfig
from perceiverio.training import ImageClassificationTask, OptimizerConfig, SequenceClassificationTask
from perceiverio.training.resume import random_states, set_random_states

HERE = Path(__file__).resolve().parent  # tests/training: resume_worker.py sits beside this file
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture
def deterministic():
    """One thread and deterministic algorithms (as the worker script sets them), restored afterwards."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(strict)
    torch.set_num_threads(threads)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_after_a_mid_epoch_checkpoint_then_resume_matches_the_uninterrupted_run(tmp_path, deterministic):
    sys.path.insert(0, str(HERE))
    import resume_worker as worker

    worker.write_text(tmp_path / "text.txt")
    script = [sys.executable, str(HERE / "resume_worker.py"), str(tmp_path)]
    with open(tmp_path / "kill.log", "w") as log:
        killed = subprocess.Popen([*script, "kill"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        worker.main(str(tmp_path), "straight")  # the uninterrupted run, here while the other one starts
        deadline = time.monotonic() + 180
        while not (tmp_path / "ready").exists():
            assert killed.poll() is None, (tmp_path / "kill.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never got past its mid-epoch checkpoint"
            time.sleep(0.1)
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
    assert killed.returncode == -signal.SIGKILL

    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    position = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert checkpoint["global_step"] == worker.EVERY and position == [{"epoch": 0, "batches": worker.EVERY}]
    assert "RandomStates" in checkpoint["callbacks"]
    resumed = subprocess.run([*script, "resume"], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    straight, after = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resume.pt")
    assert straight["global_step"] == after["global_step"] == worker.STEPS
    assert sorted(after["seen"]) == list(range(worker.EVERY, worker.STEPS))  # the epoch's rest, then the next one
    assert after["seen"] == {k: straight["seen"][k] for k in after["seen"]}  # the same batches and masks
    assert same_weights(straight["weights"], after["weights"])  # and the same dropout


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def classification_run(seed: int) -> tuple[L.LightningModule, DataLoader]:
    """A sequence classifier with dropout on a shuffled loader (5 batches per epoch)."""
    g = torch.Generator().manual_seed(5)
    items = [{"input_ids": torch.randint(6, 262, (16,), generator=g), "labels": torch.tensor(i % 2)} for i in range(10)]
    encoder = EncoderConfig(num_latents=8, num_latent_channels=32, num_self_attends_per_block=1, dropout=0.3)
    config = SequenceClassifierConfig.tiny(max_seq_len=16, encoder=encoder)
    module = SequenceClassificationTask(config, optimizer=OptimizerConfig(lr=3e-3, warmup_steps=2))
    return module, loader(ListDataset(items), 2, 0, shuffle=True, seed=seed)


def image_run(seed: int) -> tuple[L.LightningModule, DataLoader]:
    """An image classifier with flips, shifts, MixUp and CutMix on a shuffled loader (5 batches per epoch)."""
    g = torch.Generator().manual_seed(5)
    items = [{"images": torch.rand(3, 32, 32, generator=g), "labels": torch.tensor(i % 10)} for i in range(10)]
    optimizer = OptimizerConfig(lr=3e-3, schedule="constant")
    module = ImageClassificationTask(flip=True, translate=2, mixup_alpha=0.2, cutmix_alpha=1.0, optimizer=optimizer)
    return module, loader(ListDataset(items), 2, 0, shuffle=True, seed=seed)


@pytest.mark.parametrize("build", [classification_run, image_run], ids=["shuffled-dropout", "augmentation"])
def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path, deterministic, build):
    """Stopped after step 3 of 5 in the first epoch, resumed to step 8; validation (a plain DataLoader, whose
    iterator draws from the global generator) runs right after the checkpointed step and does not shift the draws."""
    val = DataLoader(ListDataset([build(0)[1].dataset[i] for i in range(2)]), batch_size=2)

    def run(seed, max_steps, callbacks=(), ckpt_path=None):
        L.seed_everything(seed, verbose=False)
        module, train = build(seed=3)
        checkpoint = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
        t = cpu_trainer(
            max_steps=max_steps,
            callbacks=list(callbacks),
            enable_checkpointing=bool(checkpoint),
            val_check_interval=3,
            limit_val_batches=1,
        )
        t.fit(module, train, val, ckpt_path=ckpt_path)
        return {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    straight = run(0, 8)
    run(0, 8, [ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_last=True), StopAt(3)])
    resumed = run(1, 8, ckpt_path=tmp_path / "last.ckpt")  # another seed: every state comes from the file
    assert same_weights(straight, resumed)


def test_loader_position_skips_the_delivered_batches_also_per_rank_and_with_workers():
    data = ListDataset(list(range(10)))

    def epochs(dl, n):
        return [[b.tolist() for b in dl] for _ in range(n)]

    full = epochs(loader(data, 3, 0, shuffle=True, seed=1), 3)
    assert full[0] != full[1] and sorted(sum(full[1], [])) == list(range(10))  # a fresh permutation per epoch
    first = loader(data, 3, 0, shuffle=True, seed=1)
    it = iter(first)
    assert [next(it).tolist() for _ in range(2)] == full[0][:2] and first.state_dict() == {"epoch": 0, "batches": 2}
    for workers in (0, 1):
        resumed = loader(data, 3, workers, shuffle=True, seed=1)
        resumed.load_state_dict(first.state_dict())
        assert epochs(resumed, 2) == [full[0][2:], full[1]]
        assert resumed.state_dict() == {"epoch": 1, "batches": 4}
    complete = loader(data, 3, 0, shuffle=True, seed=1)
    complete.load_state_dict({"epoch": 1, "batches": 4})  # a finished epoch: the next one from its start
    assert epochs(complete, 1) == [full[2]]

    def rank(r, state=None):
        """Rank ``r``'s batches of epochs 0-2, or of what is left of them after ``state`` (the loader built as
        Lightning rebuilds it under DDP, with Lightning's ``set_epoch`` call before every epoch)."""
        base = loader(data, 2, 0, shuffle=True, seed=1)
        dl = ResumableLoader(
            data, batch_size=2, sampler=DistributedSamplerWrapper(base.sampler, num_replicas=2, rank=r)
        )
        if state is not None:
            dl.load_state_dict(state)
        out = []
        for epoch in range(0 if state is None else state["epoch"], 3):
            dl.sampler.set_epoch(epoch)
            out.append([b.tolist() for b in dl])
        return out

    shards = [rank(0), rank(1)]
    for epoch in range(3):  # each epoch split between the ranks
        assert sorted(sum(shards[0][epoch] + shards[1][epoch], [])) == list(range(10))
    for r in (0, 1):
        assert rank(r, {"epoch": 1, "batches": 1}) == [shards[r][1][1:], shards[r][2]]


def test_random_states_survive_a_weights_only_checkpoint(tmp_path):
    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    torch.save({"states": random_states()}, tmp_path / "states.pt")
    expected = draws()
    draws()
    set_random_states(torch.load(tmp_path / "states.pt", weights_only=True)["states"])
    assert draws() == expected
