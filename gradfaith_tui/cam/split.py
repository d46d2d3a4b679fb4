"""The net split at the CAM target layer, with its BatchNorms folded, for the fast engine's passes.

Where the target layer's output is what timm's forward_features returns (the default layer of ResNets,
DenseNets and EfficientNets), the engine runs the trunk without autograd and only the head with it, so no
hook is needed; and the trunk is a torch.fx trace in which each BatchNorm after a convolution is folded
into it (torch.fx.experimental.optimization.fuse): fewer kernels in every pass, Faith's included. That
folds ResNets' BatchNorms (CPU, 224 px, Grad-CAM + Faith: ResNet-50 1.03x, ResNet-101 1.08x; on a GPU,
where BatchNorm is a memory-bound pass of its own, more is expected). timm's BatchNormAct layers (DenseNet,
EfficientNet) are not folded (tried: EfficientNet-B0 0.93-0.95x on the CPU; worth measuring on a GPU), so
those nets keep the hook, as do ViTs and a --target-layer inside the net.
"""

from __future__ import annotations

import copy

import torch

from gradfaith_tui.cam.layers import TargetLayer


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

    def __init__(self, model: torch.nn.Module, trunk: torch.nn.Module):
        self.model, self.trunk = model, trunk

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.model.prepare(x))

    def head(self, act: torch.Tensor) -> torch.Tensor:
        return self.model.net.forward_head(act)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def split_at(model: torch.nn.Module, layer: TargetLayer) -> SplitNet | None:
    """The split, or None where the target layer is not the end of forward_features or fx cannot trace the net."""
    net = model.net
    if layer.reshape is not None or model.training or not hasattr(net, "forward_features") or not _plain_batchnorms(net):
        return None  # (no plain BatchNorm: nothing to fold, so no trace; DenseNet-161's takes ~1 s)
    p = next(model.parameters())
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
    try:
        from torch.fx.experimental.optimization import fuse

        traced = _trace(net)
        before = _plain_batchnorms(traced)
        trunk = fuse(traced, inplace=True, no_trace=True)
    except Exception:  # not traceable: the hooked engine computes the same maps
        return None
    if _plain_batchnorms(trunk) == before:  # none of them after a convolution: the hook costs no more
        return None
    if p.device.type == "cuda":
        trunk = trunk.to(memory_format=torch.channels_last)  # the folded weights are new tensors
    return SplitNet(model, trunk)
