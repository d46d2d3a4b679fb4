"""The net split at the CAM target layer, for the fast engine's passes: trunk without autograd, head with it.

Where the target layer's output is what timm's forward_features returns (the default layer of ResNets,
DenseNets and EfficientNets), the engine runs the trunk without autograd and only the head with it, so no
hook is needed. The trunk is a torch.fx trace in which each BatchNorm after a convolution is folded into it
(torch.fx.experimental.optimization.fuse): fewer kernels in every pass, Faith's included (CPU, 224 px,
Grad-CAM + Faith: ResNet-50 1.03x, ResNet-101 1.08x). timm's BatchNormAct layers (DenseNet, EfficientNet)
are not folded (tried: EfficientNet-B0 0.93-0.95x on the CPU). On CUDA the trunk, folded or not, is also
replayed from a CUDA graph (cam/graphs.py), which is what those many-layer nets need on a GPU; with
compile=True (`precompute --compile`) it also runs through torch.compile (cam/compiled.py). On the CPU
without compile a net with nothing to fold keeps the hook, as do ViTs and a --target-layer inside the net
everywhere.
"""

from __future__ import annotations

import copy

import torch

from gradfaith_tui.cam.compiled import CompiledForward
from gradfaith_tui.cam.graphs import GraphedForward
from gradfaith_tui.cam.layers import TargetLayer
from gradfaith_tui.models import precision


class _Features(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _trace(net: torch.nn.Module) -> torch.fx.GraphModule:
    """forward_features of a deep copy (the model itself is left as it was), traced as timm traces its nets:
    its no-trace modules as leaves, its no-trace functions (such as "same" padding) wrapped."""
    from timm.layers import get_notrace_functions, get_notrace_modules

    leaves = tuple(get_notrace_modules())

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or super().is_leaf_module(m, qualname)

    root = _Features(copy.deepcopy(net))
    return torch.fx.GraphModule(root, Tracer(autowrap_functions=tuple(get_notrace_functions())).trace(root))


def _plain_batchnorms(m: torch.nn.Module) -> int:
    return sum(type(b) is torch.nn.BatchNorm2d for b in m.modules())  # fuse folds exactly these


class SplitNet:
    """Called like the Classifier it was made from; features() and head() are its two halves."""

    def __init__(self, model: torch.nn.Module, trunk: torch.nn.Module, graphs: bool = False, compile: bool = False):
        self.model, self.trunk = model, trunk
        # Under a graph every batch is padded into one shape, so the compiled kernels can be specialised to it.
        self.compiled = CompiledForward(self._plain, static=graphs) if compile else None
        # Compiled: one graph, so one compilation (each wider shape would compile once more).
        self.graphed = GraphedForward(self._features, widths=1 if compile else 3) if graphs else None

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.model.prepare(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self._plain(x) if self.compiled is None else self.compiled(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x) if self.graphed is None else self.graphed(x)

    def head(self, act: torch.Tensor) -> torch.Tensor:
        return self.model.net.forward_head(act)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def path(self) -> str:
        """How the trunk runs, for benchmarks and logs: folded, graphed, both, or neither (split)."""
        parts = ["folded"] if isinstance(self.trunk, torch.fx.GraphModule) else []
        if self.compiled is not None and self.compiled.compiled_once:
            parts.append("compiled")
        elif self.compiled is not None and self.compiled.broken:
            parts.append(f"not compiled: {self.compiled.broken[:60]}")
        if self.graphed is not None and self.graphed.recorded:
            parts.append("graphed")
        elif self.graphed is not None and self.graphed.broken:
            parts.append(f"not graphed: {self.graphed.broken[:60]}")
        return ", ".join(parts) or "split"


def _folded(net: torch.nn.Module) -> torch.nn.Module | None:
    """forward_features traced with its BatchNorms folded into their convolutions, or None where there is
    nothing to fold or fx cannot trace the net."""
    if not _plain_batchnorms(net):
        return None  # no trace then (DenseNet-161's takes ~1 s)
    try:
        from torch.fx.experimental.optimization import fuse

        traced = _trace(net)
        before = _plain_batchnorms(traced)
        trunk = fuse(traced, inplace=True, no_trace=True)
    except Exception:  # not traceable: the unfolded trunk computes the same
        return None
    if _plain_batchnorms(trunk) == before:  # none of them after a convolution
        return None
    return trunk


def split_at(model: torch.nn.Module, layer: TargetLayer, graphs: bool = True, compile: bool = False) -> SplitNet | None:
    """The split, or None where the target layer is not the end of forward_features, or (on the CPU, or
    with graphs=False, and without compile) where there is nothing to fold, so the hooked engine costs no more."""
    net = model.net
    if layer.reshape is not None or model.training or not hasattr(net, "forward_features"):
        return None
    p = next(model.parameters())
    graphs = graphs and p.device.type in precision.GRAPH_DEVICES
    if not graphs and not compile and not _plain_batchnorms(net):
        return None
    seen: list[torch.Tensor] = []
    handle = layer.module.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():  # a small probe: is the layer's output the very tensor forward_features returns?
            out = net.forward_features(model.prepare(torch.zeros(1, 1, 64, 64, device=p.device, dtype=p.dtype)))
    except Exception:  # e.g. a net that takes one input size only
        return None
    finally:
        handle.remove()
    if not seen or seen[-1] is not out:
        return None
    trunk = _folded(net)
    if trunk is None:  # nothing folded: worth splitting only for the graphs or the compiler
        return SplitNet(model, _Features(net), graphs, compile) if graphs or compile else None
    if p.device.type == "cuda":
        trunk = trunk.to(memory_format=torch.channels_last)  # the folded weights are new tensors
    return SplitNet(model, trunk, graphs, compile)
