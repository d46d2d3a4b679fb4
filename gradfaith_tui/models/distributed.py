"""Multi-process training and precompute under torchrun: NCCL on GPUs, gloo on the CPU (used by the tests)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from gradfaith_tui.errors import PeerStopped


# How gloo and NCCL say that a peer's process is gone (closed its connections, or exited).
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited", "Broken pipe")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """Each rank takes its own GPU when CUDA is asked for."""
        return f"cuda:{self.local_rank}" if self.world > 1 and requested.startswith("cuda") else requested

    def barrier(self) -> None:
        if self.world > 1:
            with self._peers():
                torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        with self._peers():
            torch.distributed.all_reduce(t)
        return t.tolist()

    @contextmanager
    def _peers(self):
        """A rank that stopped on an error (a user mistake found by rank 0 alone, say) closes its connections:
        the others then say so in one line, not with a traceback of their own under the one that matters."""
        try:
            yield
        except RuntimeError as exc:  # gloo and NCCL both raise RuntimeError subclasses (DistBackendError)
            if not any(s in str(exc) for s in PEER_GONE):
                raise  # a timeout or this rank's own failure: its own message, not blame on another rank
            raise PeerStopped(f"rank {self.rank}: stopped because another rank did (its error is above)") from exc


def from_env(device: str = "cpu") -> Dist:
    """The torchrun context (WORLD_SIZE/RANK/LOCAL_RANK), initialising the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
