"""The training forward and backward replayed from CUDA graphs (torch.cuda.make_graphed_callables).

At the paper's batch of 32, a training step of DenseNet-161 or EfficientNet-B0 is thousands of small kernels,
each launched by the host in turn; a graph replays the forward, and another the backward, in one launch each.
The optimiser (fused AdamW), the loss and the schedule stay eager, so OneCycle's learning rate and momentum
move as they do without graphs. Training steps take full batches only (train.steps_per_epoch), so one shape
is recorded per run; any other shape, and a net that cannot be recorded (the reason is kept in .broken),
runs the plain forward. Validation and precise BN call the model itself, never the graph.
"""

from __future__ import annotations

import warnings

import torch

from gradfaith_tui.models import precision


class _Forward(torch.nn.Module):
    """make_graphed_callables replaces the forward of the module it is given: this one, not the model's."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GraphedTraining:
    """Called like the model in a training step, under autocast(..., cache=False) (graphs cannot use the
    autocast weight cache: the recording would keep the first step's bf16 weights for good)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.broken: str | None = None
        self._graphed: torch.nn.Module | None = None
        self._shape: tuple[int, ...] | None = None

    @property
    def recorded(self) -> bool:
        return self._graphed is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.broken or x.device.type not in precision.GRAPH_DEVICES or not torch.is_grad_enabled():
            return self.model(x)
        if self._graphed is None:
            try:
                self._record(x)
            except Exception as e:  # the plain step computes the same; benchmarks print the reason
                self.broken = f"{type(e).__name__}: {e}"
                return self.model(x)
        if tuple(x.shape) != self._shape:  # the graph would broadcast into its recorded input
            return self.model(x)
        return self._graphed(x)

    def _record(self, x: torch.Tensor) -> None:
        # The warm-up passes (3, on a side stream, where cuDNN's benchmark search also runs) update
        # BatchNorm's running statistics from this batch; precise BN re-estimates them each epoch anyway.
        wrapper = _Forward(self.model).train(self.model.training)
        # Warnings PyTorch gives once a run about graphs it made itself (autograd nodes recorded on the side
        # stream; the backward thread's first cuBLAS call): nothing a user can act on, nothing wrong in the
        # results (the GPU was busy 95-97% of each step on an H200).
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
        warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no current CUDA context")
        self._graphed = torch.cuda.make_graphed_callables(wrapper, (x.detach().clone(),), allow_unused_input=True)
        self._shape = tuple(x.shape)
