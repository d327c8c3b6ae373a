"""Data parallelism over torch.distributed, as set up by ``torchrun`` or ``accelerate launch``.

Each process samples its own prompts and noise (its seed is offset by its rank), computes gradients
on its own rollouts, and the LoRA gradients are averaged with one all-reduce before every optimizer
step, so every rank applies the same update. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

__all__ = ["DistContext"]


@dataclass
class DistContext:
    """Rank, world size and the collective operations the trainer needs (no-ops in one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device_type: str = "cpu") -> DistContext:
        """Join the process group described by ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (torchrun, accelerate)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_reduce_mean(self, tensors: Iterable[torch.Tensor]) -> None:
        """Average tensors in place across processes, in one flattened all-reduce."""
        tensors = list(tensors)
        if not self.active or not tensors:
            return
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n

    def mean_dict(self, values: Mapping[str, float], device: torch.device) -> dict[str, float]:
        """Average scalar metrics across processes (keys must match on every rank)."""
        if not self.active or not values:
            return dict(values)
        keys = sorted(values)
        packed = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
        self.all_reduce_mean([packed])
        return dict(zip(keys, packed.tolist()))

    def any(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` is true on any process (used to skip a step everywhere at once)."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order, on every process (``[obj]`` in one process)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        gathered: list[object] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()
