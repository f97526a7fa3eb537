"""ExportCallback under sharded strategies: the weights are gathered through the strategy on every process and
written by global rank 0 only.

Lightning's ``FSDPStrategy`` cannot run in this CPU-only suite: its accelerator connector refuses ``strategy="fsdp"``
without a CUDA accelerator, and PyTorch's ``FullyShardedDataParallel`` itself refuses a process without one ("FSDP
needs a non-CPU accelerator device"). So the callback is driven here with the strategy replaced by the smallest
stand-in that behaves as ``FSDPStrategy`` does: ``lightning_module_state_dict()`` returns the full state dict on rank 0
(CPU tensors, as FSDP's ``FULL_STATE_DICT`` with ``rank0_only`` and ``offload_to_cpu`` does) and an empty dict on every
other rank, and the live module's parameters are shards (here: zeroed), so the export must not read them. The
fallback for strategies that hand out shards (DTensors) runs for real: two CPU processes (gloo) shard the task model
with PyTorch's ``fully_shard`` (FSDP2, which does run on CPU) and the callback gathers and writes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from perceiverio.tasks import MaskedLanguageModel, MaskedLanguageModelConfig
from perceiverio.training import ExportCallback, MaskedLanguageModelTask

HERE = Path(__file__).resolve().parent  # tests/training: the FSDP worker script sits beside this file
CONFIG = MaskedLanguageModelConfig.tiny(max_seq_len=32)


class FSDPLikeStrategy:
    """What ``ExportCallback`` uses of ``FSDPStrategy``: the gathered state dict and a barrier."""

    def __init__(self, full_state: dict[str, torch.Tensor], rank: int) -> None:
        self.full_state, self.rank = full_state, rank
        self.calls: list[str] = []
        self.model = None

    def lightning_module_state_dict(self) -> dict[str, torch.Tensor]:
        self.calls.append("state_dict")
        return dict(self.full_state) if self.rank == 0 else {}

    def barrier(self, name: str | None = None) -> None:
        self.calls.append("barrier")


def _trainer(strategy: FSDPLikeStrategy, rank: int, step: int = 7) -> SimpleNamespace:
    return SimpleNamespace(
        strategy=strategy,
        is_global_zero=rank == 0,
        global_rank=rank,
        global_step=step,
        log_dir=None,
        default_root_dir=".",
    )


def test_fsdp_export_gathers_on_every_rank_and_writes_on_rank_zero(tmp_path):
    torch.manual_seed(0)
    task = MaskedLanguageModelTask(CONFIG)
    full = {k: v.detach().clone() for k, v in task.state_dict().items()}  # what FSDP gathers to rank 0
    with torch.no_grad():  # the live module holds only shards: nothing of it may reach the export
        for p in task.parameters():
            p.zero_()

    strategies = {}
    for rank in (1, 0):  # rank 1 first: it must not write, whatever the order
        strategies[rank] = FSDPLikeStrategy(full, rank)
        ExportCallback(dirpath=str(tmp_path / "model")).export(_trainer(strategies[rank], rank), task)
        if rank == 1:
            assert not (tmp_path / "model").exists()
    # every rank takes part in the gathering (a collective under FSDP), then waits for rank 0's files
    assert strategies[0].calls == strategies[1].calls == ["state_dict", "barrier"]

    model = MaskedLanguageModel.from_pretrained(tmp_path / "model")
    assert model.config == task.model.config
    written = model.state_dict()
    assert written.keys() == {k[len("model.") :] for k in full if k.startswith("model.")}
    for k, v in written.items():
        torch.testing.assert_close(v, full[f"model.{k}"], rtol=0, atol=0, msg=k)
    assert all(bool((p == 0).all()) for p in task.parameters())  # the live module was left alone


def test_export_writes_once_per_step(tmp_path):
    task = MaskedLanguageModelTask(CONFIG)
    strategy = FSDPLikeStrategy(task.state_dict(), 0)
    callback = ExportCallback(dirpath=str(tmp_path / "model"))
    callback.export(_trainer(strategy, 0, step=3), task)
    callback.export(_trainer(strategy, 0, step=3), task)  # validation end, then fit end at the same step
    assert strategy.calls == ["state_dict", "barrier"]
    callback.export(_trainer(strategy, 0, step=4), task)
    assert strategy.calls.count("state_dict") == 2


def test_export_gathers_dtensor_shards_from_two_cpu_processes(tmp_path):
    """Two gloo processes shard the task model with FSDP2 (``fully_shard``); the strategy hands out DTensor shards,
    which the callback gathers with PyTorch's distributed-checkpoint API; rank 0 writes the whole model."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "fsdp_export_worker.py"), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = json.loads((tmp_path / "reference.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "reference.json"]
    model = MaskedLanguageModel.from_pretrained(tmp_path / "model")
    sums = {k: float(v.double().sum()) for k, v in model.state_dict().items()}
    assert sums.keys() == reference.keys()
    for k in sums:
        assert sums[k] == pytest.approx(reference[k], rel=1e-6, abs=1e-6), k
