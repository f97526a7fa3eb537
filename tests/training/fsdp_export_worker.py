"""Two CPU processes (gloo) whose task model is sharded with FSDP2 (``fully_shard``), for
tests/test_export_callback.py::test_export_gathers_dtensor_shards_from_two_cpu_processes.

Each rank builds the same task module (same seed), rank 0 records the per-tensor sums of the whole model in
``reference.json``, then both shard it and run ``ExportCallback.export`` with a strategy that hands out the sharded
state dict (as ``FSDPStrategy(state_dict_type="sharded")`` and ``ModelParallelStrategy`` do). The callback gathers
the shards on every rank and rank 0 writes ``model/``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class ShardedStrategy:
    def __init__(self, module: torch.nn.Module) -> None:
        self.model = module

    def lightning_module_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()  # DTensor shards

    def barrier(self, name: str | None = None) -> None:
        dist.barrier()


def run(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from perceiverio.tasks import MaskedLanguageModelConfig
        from perceiverio.training import ExportCallback, MaskedLanguageModelTask

        torch.manual_seed(0)
        task = MaskedLanguageModelTask(MaskedLanguageModelConfig.tiny(max_seq_len=32))
        if rank == 0:
            sums = {k: float(v.double().sum()) for k, v in task.model.state_dict().items()}
            Path(out_dir, "reference.json").write_text(json.dumps(sums))
        mesh = init_device_mesh("cpu", (world,))
        fully_shard(task.model, mesh=mesh)
        assert any(type(p).__name__ == "DTensor" for p in task.parameters())
        trainer = SimpleNamespace(
            strategy=ShardedStrategy(task),
            is_global_zero=rank == 0,
            global_rank=rank,
            global_step=1,
            log_dir=None,
            default_root_dir=out_dir,
        )
        ExportCallback(dirpath=str(Path(out_dir, "model"))).export(trainer, task)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    mp.spawn(run, args=(2, free_port, sys.argv[1]), nprocs=2)
