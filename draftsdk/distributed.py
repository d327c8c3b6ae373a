"""Data parallelism over torch.distributed, as set up by ``torchrun`` or ``accelerate launch``.

Each process samples its own prompts and noise (its seed is offset by its rank), computes gradients
on its own rollouts, and the LoRA gradients are averaged with one all-reduce before every optimizer
step, so every rank applies the same update. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch

from .errors import DraftError

__all__ = ["DistContext"]

DEFAULT_TIMEOUT_S = 600.0


@dataclass
class DistContext:
    """Rank, world size and the collective operations the trainer needs (no-ops in one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, device_type: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
        """Join the process group described by ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (torchrun, accelerate).

        Every collective waits at most ``timeout_s`` for the other processes (a stopped or dead rank
        then fails the others instead of hanging them). A group that is already initialised (by
        accelerate, say) keeps its own timeout.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   timeout_s=timeout_s)

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:  # gloo/NCCL timeouts and a peer that went away (DistBackendError is one)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DraftError(
                f"rank {self.rank}: {what} across {self.world_size} processes failed ({first}); another process stopped, "
                f"died or fell more than collective_timeout_s={self.timeout_s:g} s behind; resume from the last checkpoint"
            ) from exc

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
        with self._collective("averaging the gradients"):
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
        with self._collective("agreeing on skipping the update"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order, on every process (``[obj]`` in one process)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        gathered: list[object] = [None] * self.world_size
        with self._collective("gathering"):
            dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            with self._collective("waiting at a barrier"):
                dist.barrier()
