"""A small masked-LM fit for tests/training/test_resume.py: ``python resume_worker.py FOLDER MODE``.

MODE ``straight`` trains to the end; ``kill`` trains with a checkpoint every ``EVERY`` steps (``FOLDER/ckpt/last.ckpt``)
and, once it has trained past the first (mid-epoch) checkpoint, writes ``FOLDER/ready`` and waits to be killed;
``resume`` resumes from ``FOLDER/ckpt/last.ckpt`` to the end. ``straight`` and ``resume`` write
``FOLDER/<mode>.pt``: the final weights and a fingerprint of each step's batch. Run as a script: deterministic
algorithms and one thread (the test sets both around its in-process ``main``). Dropout in the model, whole-word
masks drawn per window, validation every 3 steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L
import torch

SEQ_LEN, BATCH, STEPS, EVERY, KILL_AT = 32, 4, 14, 5, 6  # 8 batches per epoch: checkpoints at steps 5 and 10
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jumbo flying zebras".split()


def write_text(path: Path) -> None:
    """About 1.1 kB of words (deterministic): 8 training batches of 4 windows of 32 bytes per epoch."""
    words = [WORDS[(7 * i + i // 5) % len(WORDS)] for i in range(230)]
    path.write_text(" ".join(words) + "\n")


class Fingerprints(L.Callback):
    """``{global step: (sum of input ids, sum of labels)}`` of the batch each step trains on."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen[trainer.global_step] = (int(batch["input_ids"].sum()), int(batch["labels"].sum()))


class WaitToBeKilled(L.Callback):
    """At the start of step ``KILL_AT`` (past the checkpoint of step ``EVERY``): write ``ready`` and wait."""

    def __init__(self, ready: Path) -> None:
        self.ready = ready

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == KILL_AT:
            self.ready.write_text(str(trainer.global_step))
            time.sleep(600)


def main(folder: str, mode: str) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from perceiverio.core.config import EncoderConfig
    from perceiverio.data.text import TextDataModule
    from perceiverio.tasks import MaskedLanguageModelConfig
    from perceiverio.training import MaskedLanguageModelTask, OptimizerConfig

    out = Path(folder)
    L.seed_everything(0 if mode != "resume" else 1, verbose=False)  # the resumed run's states come from the file
    encoder = EncoderConfig(
        num_latents=16,
        num_latent_channels=64,
        num_cross_attention_heads=2,
        num_self_attention_heads=2,
        num_self_attends_per_block=2,
        dropout=0.2,
    )
    module = MaskedLanguageModelTask(
        MaskedLanguageModelConfig.tiny(max_seq_len=SEQ_LEN, encoder=encoder),
        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=2),
    )
    data = TextDataModule(path=str(out / "text.txt"), seq_len=SEQ_LEN, batch_size=BATCH, mask_prob=0.3)
    fingerprints = Fingerprints()
    callbacks: list[L.Callback] = [fingerprints]
    if mode == "kill":
        callbacks += [ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=EVERY, save_last=True)]
        callbacks += [WaitToBeKilled(out / "ready")]
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        val_check_interval=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=mode == "kill",
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    ckpt_path = out / "ckpt" / "last.ckpt" if mode == "resume" else None
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    weights = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    result = {"weights": weights, "seen": fingerprints.seen, "global_step": trainer.global_step}
    torch.save(result, out / f"{mode}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    main(sys.argv[1], sys.argv[2])
