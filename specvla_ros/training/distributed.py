"""torch.distributed as torchrun starts it: which rank this process is, its device, and the few
collectives the draft-head stages need (a barrier and a sum).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process it starts; a
plain `specvla ...` has none of them and runs as a world of one, with no process group. The backend
follows the device: NCCL when every rank drives its own GPU, gloo on CPU. No launcher of our own:
single- and multi-node runs are torchrun's (docs/training.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from specvla_ros.core.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Workers:
    """This process's place among the ranks of a run (a world of one outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, indexes and reports, and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (float64; the same list on every rank)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.cpu().tolist()


def resolve_device(device: str, local_rank: int) -> str:
    """'auto': this rank's GPU (cuda:LOCAL_RANK) when CUDA is there, else the CPU."""
    if device != "auto":
        return device
    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"


def start_workers(device: str = "auto", timeout_min: float = 60.0) -> Workers:
    """Join the process group torchrun prepared (if any) and pick this rank's device.

    timeout_min bounds every collective: ranks that finish their share of an extraction wait at
    the final barrier for the slowest one, so it must exceed the longest imbalance between ranks.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Workers(device=resolve_device(device, 0))
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is {world_size} but {', '.join(missing)} are not set: start distributed "
                          "runs with torchrun (docs/training.md, 'Several processes, GPUs or nodes')")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    chosen = resolve_device(device, local_rank)
    if chosen.startswith("cuda"):
        torch.cuda.set_device(torch.device(chosen))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.startswith("cuda") else "gloo",
                                timeout=timedelta(minutes=timeout_min))
    return Workers(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def stop_workers(workers: Workers) -> None:
    """Leave the process group (every rank, after its last collective)."""
    if workers.distributed and dist.is_initialized():
        dist.destroy_process_group()
