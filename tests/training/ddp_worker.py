"""A 2-process CPU DDP run (gloo) of the MLM task, for tests/test_training.py::test_ddp_two_processes_agree.

Lightning's ``ddp`` strategy relaunches this script (``sys.argv``) for rank 1, so it must be a standalone script.
Each rank writes ``rank<r>.json`` into the folder given as the only argument: its final global step, a SHA-256 of
its weights, the ids it trained on, the validation metrics it logged and the final bits per byte
against a single-process computation over the whole validation set.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader


def examples(n: int, length: int = 24, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(6, 262, (length,), generator=g)
        masked = torch.rand(length, generator=g) < 0.3
        masked[0] = True
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        out.append(
            {
                "input_ids": ids.masked_fill(masked, 4),
                "attention_mask": torch.ones(length, dtype=torch.long),
                "labels": labels,
            }
        )
    return out


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(int(batch["input_ids"].sum()))


def main(out_dir: str) -> None:
    from perceiverio.tasks import MaskedLanguageModelConfig
    from perceiverio.training import ExportCallback, MaskedLanguageModelTask, OptimizerConfig

    L.seed_everything(0, verbose=False)
    module = MaskedLanguageModelTask(
        MaskedLanguageModelConfig.tiny(max_seq_len=32), optimizer=OptimizerConfig(lr=3e-3, schedule="constant")
    )
    record = RecordBatches()
    trainer = L.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[record, ExportCallback(dirpath=str(Path(out_dir, "model")))],
    )
    val = examples(6, length=24, seed=1)
    for i, example in enumerate(val):  # uneven label counts: a mean of per-process means would be wrong
        example["labels"][2 + 3 * i :] = -100
    trainer.fit(module, DataLoader(examples(8), batch_size=2), DataLoader(val, batch_size=2))
    final = trainer.validate(module, DataLoader(val, batch_size=2), verbose=False)[0]
    module.model.eval()
    with torch.no_grad():  # the metric over the whole validation set, computed in one process
        batch = next(iter(DataLoader(val, batch_size=len(val))))
        logits = module.model(batch["input_ids"], batch["attention_mask"]).logits
        keep = batch["labels"] != -100
        nats = torch.nn.functional.cross_entropy(logits[keep], batch["labels"][keep], reduction="sum")
        expected = float(nats / keep.sum() / torch.log(torch.tensor(2.0)))
    digest = weights_digest(module.model)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    result = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "sha256": digest,
        "seen": record.seen,
        "val": metrics,
        "final_bits_per_byte": final["val/bits_per_byte"],
        "expected_bits_per_byte": expected,
    }
    Path(out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
