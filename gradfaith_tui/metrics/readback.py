"""A batch's results on their way back to the host, without waiting for them.

On CUDA the copies are queued behind the batch's work into pinned buffers, with an event to wait on, so
precompute can queue the next batch before it takes these: the device starts on it at once, while the host
writes this one (a copy queued after the next batch's work would wait for that work too). Elsewhere the
results are simply there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Results:
    maps: np.ndarray  # (B, h, w) float32
    probs: np.ndarray  # (B, K) float32
    metrics: dict[str, np.ndarray]  # name -> (B,) float64, NaN where a metric does not apply


class Pending:
    def __init__(self, maps: torch.Tensor, probs: torch.Tensor, metrics: dict[str, torch.Tensor]):
        self._names = list(metrics)
        packed = torch.stack([metrics[k].float() for k in self._names]) if metrics else maps.new_zeros((0, len(maps)))
        self._host = [_queue_copy(t.float()) for t in (maps, probs, packed)]
        self._event = None
        if maps.device.type == "cuda":
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(maps.device))

    def wait(self) -> Results:
        if self._event is not None:
            self._event.synchronize()
        maps, probs, packed = (t.numpy() for t in self._host)
        return Results(maps, probs, dict(zip(self._names, packed.astype(np.float64))))


def _queue_copy(t: torch.Tensor) -> torch.Tensor:
    if t.device.type == "cpu":
        return t.detach()
    # CUDA (precompute takes cpu or cuda): into pinned memory, queued behind the batch's work
    return torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
