"""A no-grad forward replayed from a CUDA graph: one launch per pass instead of hundreds.

At the engine's batch size, nets of many small layers (DenseNet-161's 160 convolutions with their norms and
concatenations, EfficientNet-B0's depthwise stages) are paced by the host launching kernels one by one, not
by the GPU running them (H200, 224 px, batch 64, Grad-CAM + Faith: DenseNet-161 1.28-1.41x, EfficientNet-B0
3.59x, ResNets 1.06-1.08x). A graph records the pass once and replays it whole, with the kernels cuDNN's
heuristics chose while recording (no per-shape search: seconds per model for little).

The first batch's shape is recorded (a run's batches are that size, but for the last), and so are whole
multiples of it that reach the forward (up to `widths` sizes: precompute's three counterfactual edits of a
batch go through in one pass of 3x its rows, --deep's deletion and insertion steps in passes of 2x), all in
one memory pool, as they never run at once: a wider batch gives each kernel more work to spread over the
GPU's units (what that is worth is for benchmarks/cam_speed.py --e2e to show). A smaller batch of
the same images' size is padded with zero images into the smallest recorded shape that holds it and its
rows taken back out: rows do not interact in an eval-mode net, and each new shape would cost cuDNN host time
to plan its kernels (up to seconds for EfficientNet-B0); a larger one is replayed in chunks of the widest.
Small passes that recur (precompute's marked rows on phantoms, about one slice in six of every batch) would
spend most of each replay on padding, so with small=True the second pass of at most a quarter of the first
shape records a graph of that quarter; a small pass seen once (a run's last batch) stays padded, as recording
would cost more than it saves.
Other image sizes, a call with autograd on, and any failure to record the first shape (the reason is kept in
.broken) run the plain forward, which computes the same; a wider shape that fails to record (memory, say)
leaves the recorded ones in use (the reason is kept in .narrow).
"""

from __future__ import annotations

from typing import Callable

import torch

from gradfaith_tui.models import precision

Forward = Callable[[torch.Tensor], torch.Tensor]


class GraphedForward:
    """For functions of independent rows (an eval-mode trunk): padding must not change the real rows."""

    def __init__(self, fn: Forward, widths: int = 3, small: bool = False):
        """widths: how many whole multiples of the first shape (itself among them) get graphs; small: one more
        graph, of a quarter of the first shape, for small passes that recur."""
        self.fn, self.widths, self.small = fn, widths, small
        self._smalls = 0  # passes seen that fit into a quarter of the first shape
        self.broken: str | None = None  # the first recording failed: every call runs the plain forward
        self.narrow: str | None = None  # a wider one failed: wider calls replay the recorded ones in chunks
        self._key: tuple | None = None  # the image shape, dtype, device and autocast of the recorded graphs
        self._graphs: dict[int, Forward] = {}  # batch size -> replay
        self._pool = None  # one memory pool for all of them

    @property
    def recorded(self) -> int:
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type not in precision.GRAPH_DEVICES or torch.is_grad_enabled() or self.broken or not len(x):
            return self.fn(x)
        dev = x.device.type
        key = (tuple(x.shape[1:]), x.dtype, str(x.device), torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        n = len(x)
        if self._key is None:
            if not self._add(x, first=True):
                return self.fn(x)
            self._key = key
        elif key != self._key:
            return self.fn(x)
        base = self._base
        quarter = base // 4
        if n not in self._graphs and n % base == 0 and self._multiples < self.widths and self.narrow is None:
            self._add(x, first=False)
        elif self.small and n <= quarter and quarter not in self._graphs and self.narrow is None:
            self._smalls += 1
            if self._smalls >= 2:
                self._add(_padded(x, quarter), first=False)
        fits = [b for b in self._graphs if b >= n]
        if not fits:
            widest = max(self._graphs)
            return torch.cat([self(x[s:s + widest]) for s in range(0, n, widest)])
        batch = min(fits)
        if n < batch:
            return self._graphs[batch](_padded(x, batch))[:n]
        return self._graphs[batch](x)

    @property
    def _base(self) -> int:
        return next(iter(self._graphs))  # the first recorded shape (dicts keep their order)

    @property
    def _multiples(self) -> int:
        return sum(b % self._base == 0 for b in self._graphs)

    def _add(self, x: torch.Tensor, first: bool) -> bool:
        try:
            self._graphs[len(x)] = self._record(x)
            return True
        except Exception as e:  # e.g. a layer that syncs with the host, or memory: the plain forward is as exact
            reason = f"{type(e).__name__}: {e}"
            if first:
                self.broken = reason
            else:
                self.narrow = reason
            return False

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
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"), amp:
            static_out = self.fn(static_in)
        # Shared: the graphs run one at a time on one stream, and each keeps its input and output alive.
        self._pool = graph.pool() if self._pool is None else self._pool

        def replay(inp: torch.Tensor) -> torch.Tensor:
            static_in.copy_(inp)
            graph.replay()
            return static_out.clone()  # the next replay overwrites static_out

        return replay


def _padded(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x with zero images appended up to `rows` (rows of an eval-mode net do not interact)."""
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))]) if rows > len(x) else x
