"""A no-grad forward replayed from a CUDA graph: one launch per pass instead of hundreds.

At the engine's batch size, nets of many small layers (DenseNet-161's 160 convolutions with their norms and
concatenations, EfficientNet-B0's depthwise stages) are paced by the host launching kernels one by one, not
by the GPU running them (H200, 224 px, batch 64, Grad-CAM + Faith: DenseNet-161 1.28-1.41x, EfficientNet-B0
3.59x, ResNets 1.06-1.08x). A graph records the pass once and replays it whole, with the kernels cuDNN's
heuristics chose while recording (no per-shape search: seconds per model for little).

The first batch's shape is recorded (a run's batches are that size, but for the last); a smaller batch of
the same images' size is padded with zero images into the recorded shape and its rows taken back out:
rows do not interact in an eval-mode net, and each new shape would cost cuDNN host time to plan its
kernels (up to seconds for EfficientNet-B0). A larger batch, other image sizes beyond max_graphs, a call
with autograd on, and any failure to record (the reason is kept in .broken) run the plain forward, which
computes the same thing.
"""

from __future__ import annotations

from typing import Callable

import torch

from gradfaith_tui.models import precision

Forward = Callable[[torch.Tensor], torch.Tensor]


class GraphedForward:
    """For functions of independent rows (an eval-mode trunk): padding must not change the real rows."""

    def __init__(self, fn: Forward, max_graphs: int = 1):
        self.fn, self.max_graphs = fn, max_graphs
        self.broken: str | None = None
        self._graphs: dict[tuple, tuple[int, Forward]] = {}  # per image shape: (batch size, replay)

    @property
    def recorded(self) -> int:
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type not in precision.GRAPH_DEVICES or torch.is_grad_enabled() or self.broken or not len(x):
            return self.fn(x)
        dev = x.device.type
        key = (tuple(x.shape[1:]), x.dtype, str(x.device), torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        if key not in self._graphs:
            if len(self._graphs) >= self.max_graphs:
                return self.fn(x)
            try:
                self._graphs[key] = (len(x), self._record(x))
            except Exception as e:  # e.g. a layer that syncs with the host: the plain forward is as exact
                self.broken = f"{type(e).__name__}: {e}"
                return self.fn(x)
        batch, replay = self._graphs[key]
        n = len(x)
        if n > batch:
            return self.fn(x)
        if n < batch:
            return replay(torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))]))[:n]
        return replay(x)

    def _record(self, x: torch.Tensor) -> Forward:
        static_in = torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x)
        dev = x.device.type
        # The caller's autocast, without its weight-cast cache: cached casts made while recording would be
        # freed when the caller's context ends, under the graph's feet (PyTorch's CUDA graphs notes).
        amp = torch.autocast(dev, dtype=torch.get_autocast_dtype(dev), enabled=torch.is_autocast_enabled(dev),
                             cache_enabled=False)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), amp:  # warm-up off the default stream, as recording needs
            for _ in range(2):
                self.fn(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA calls (a writer, say) do not spoil the recording
        with torch.cuda.graph(graph, capture_error_mode="thread_local"), amp:
            static_out = self.fn(static_in)

        def replay(inp: torch.Tensor) -> torch.Tensor:
            static_in.copy_(inp)
            graph.replay()
            return static_out.clone()  # the next replay overwrites static_out

        return replay
