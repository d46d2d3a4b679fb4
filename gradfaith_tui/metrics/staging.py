"""Batches of the test split staged on the model's device, ready before the device needs them.

Precompute stages batch k+1 while the device still works on batch k: the rows are gathered into reused
host buffers (pinned on CUDA, two sets taken in turn) and their copies start without waiting. So the
gathering and the copies leave the critical path, and no pageable copy inside the metrics stalls the
stream. A set is reused two batches later, after the batch that used it was read back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradfaith_tui.models.train import to_unit


@dataclass
class Staged:
    x: torch.Tensor  # (B, 1, S, S) float in [0, 1]
    masks: torch.Tensor  # (B, S, S) bool: lesion masks (all False where there is none)
    body: torch.Tensor  # (B, S, S) bool
    lungs: torch.Tensor  # (B, S, S) bool
    regions: torch.Tensor | None  # (B, S, S) bool: planted markers (phantoms); None where unknown
    marked: np.ndarray  # batch rows that carry a marker
    marked_on_device: torch.Tensor  # the same rows, on the device
    labels: torch.Tensor | None  # (B,) true classes, when the maps explain them
    cases: np.ndarray | None = None  # (B,) the rows' case indices (what seeds a case's own random draws)

    @classmethod
    def of(cls, x: torch.Tensor, masks, body, lungs, regions=None, labels=None) -> "Staged":
        """A batch from arrays already at hand (tests, one-off calls)."""
        dev = x.device

        def on(a):
            return None if a is None else torch.as_tensor(a, device=dev)

        marked = np.zeros(0, np.int64) if regions is None else np.flatnonzero(np.asarray(regions).any(axis=(1, 2)))
        return cls(x, on(masks), on(body), on(lungs), on(regions), marked,
                   torch.from_numpy(marked).to(dev), on(labels))


class Stager:
    def __init__(self, images: np.ndarray, masks: np.ndarray, body: np.ndarray, lungs: np.ndarray,
                 regions: np.ndarray | None, labels: np.ndarray | None, batch: int, device: str | torch.device):
        self.device = torch.device(device)
        self._src = {"images": images, "masks": masks, "body": body, "lungs": lungs}
        if regions is not None:
            self._src["regions"] = regions
        if labels is not None:
            self._src["labels"] = np.asarray(labels, dtype=np.int64)
        self._marked = None if regions is None else regions.any(axis=(1, 2))
        pin = self.device.type == "cuda"
        spec = {k: ((batch, *a.shape[1:]), torch.from_numpy(np.ascontiguousarray(a[:1])).dtype) for k, a in self._src.items()}
        spec["marked"] = ((batch,), torch.int64)
        self._sets = [{k: torch.empty(shape, dtype=dtype, pin_memory=pin) for k, (shape, dtype) in spec.items()}
                      for _ in range(2)]
        self._turn = 0

    def __call__(self, idx: np.ndarray) -> Staged:
        bufs, n = self._sets[self._turn], len(idx)
        self._turn ^= 1
        dev = {}
        for k, a in self._src.items():
            host = bufs[k][:n]
            np.take(a, idx, axis=0, out=host.numpy(), mode="clip")  # "clip": no buffered copy (idx is in range)
            dev[k] = host.to(self.device, non_blocking=True)
        marked = np.zeros(0, np.int64) if self._marked is None else np.flatnonzero(self._marked[idx])
        rows = bufs["marked"][:len(marked)]
        rows.numpy()[:] = marked
        return Staged(to_unit(dev["images"]), dev["masks"], dev["body"],
                      dev["lungs"], dev.get("regions"), marked, rows.to(self.device, non_blocking=True), dev.get("labels"),
                      np.asarray(idx))
