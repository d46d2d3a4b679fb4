"""The net split at the CAM target layer, for the fast engine's passes: trunk without autograd, head with it.

Where the target layer's output is what timm's forward_features returns (the default layer of ResNets,
DenseNets and EfficientNets), the engine runs the trunk without autograd and only the head with it, so no
hook is needed. The trunk is a torch.fx trace in which each BatchNorm after a convolution is folded into it
(torch.fx.experimental.optimization.fuse): fewer kernels in every pass, Faith's included (CPU, 224 px,
Grad-CAM + Faith: ResNet-50 1.03x, ResNet-101 1.08x). timm's BatchNormAct layers (DenseNet, EfficientNet)
are not folded (tried: EfficientNet-B0 0.93-0.95x on the CPU). On CUDA the trunk, folded or not, is also
replayed from a CUDA graph (cam/graphs.py), which is what those many-layer nets need on a GPU; with
compile=True (`precompute --compile`) it also runs through torch.compile (cam/compiled.py). On the CPU
without compile a net with nothing to fold keeps the hook, as does a --target-layer inside a CNN everywhere.

A timm VisionTransformer's target layer (blocks[k].norm1) sits inside a block, so there the split is at that
block's input: the blocks before it are the trunk (graphed or compiled, as above), and the head (blocks[k:],
the final norm and the classifier) runs eagerly with the engine's hook on the layer. On a GPU this keeps an
eager ViT-B/16 from being paced by the host launching its kernels: precompute's four passes a batch left the
H200 idle (0.28x the engine's rate end to end, host-bound, where the graphed CNNs reached 0.47-0.54x).
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


class _Tokens(torch.nn.Module):
    """A timm VisionTransformer's forward_features up to the input of block k: patch and position embedding,
    the blocks before k."""

    def __init__(self, net: torch.nn.Module, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.norm_pre(n.patch_drop(n._pos_embed(n.patch_embed(x))))
        return n.blocks[: self.k](x)


class _TokensHead(torch.nn.Module):
    """The rest from block k: the blocks from k (the CAM layer among them), the final norm, the classifier."""

    def __init__(self, net: torch.nn.Module, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.forward_head(n.norm(n.blocks[self.k:](tokens)))


class SplitNet:
    """Called like the Classifier it was made from; features() and head() are its two halves. hooked: the
    CAM layer is inside the head (a ViT block), so the engine keeps its hook there; else the layer's output
    is what features() returns."""

    def __init__(self, model: torch.nn.Module, trunk: torch.nn.Module, graphs: bool = False, compile: bool = False,
                 head: torch.nn.Module | None = None):
        self.model, self.trunk, self._head = model, trunk, head
        self.hooked = head is not None
        # Under a graph every batch is padded into one shape, so the compiled kernels can be specialised to it.
        self.compiled = CompiledForward(self._plain, static=graphs) if compile else None
        # Compiled: one graph, so one compilation (each wider shape would compile once more).
        # Compiled: also no quarter-size graph for small passes (a new shape would compile once more).
        self.graphed = GraphedForward(self._features, widths=1 if compile else 3, small=not compile) if graphs else None

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.model.prepare(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self._plain(x) if self.compiled is None else self.compiled(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x) if self.graphed is None else self.graphed(x)

    def head(self, act: torch.Tensor) -> torch.Tensor:
        return self.model.net.forward_head(act) if self._head is None else self._head(act)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def path(self) -> str:
        """How the trunk runs, for benchmarks and logs: folded, compiled, graphed, or none of these (split); a
        ViT's split says which block its head starts at ("head from block 11": blocks 0-10 are the trunk)."""
        parts = ["folded"] if isinstance(self.trunk, torch.fx.GraphModule) else []
        if self.hooked:
            parts.append(f"head from block {self.trunk.k}")
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
    """The split, or None where there is none: a CNN's target layer that is not the end of forward_features, a
    ViT other than timm's VisionTransformer or a layer that is a whole block (_split_tokens), or (on the CPU,
    or with graphs=False, and without compile) a net with nothing to fold, where the hooked engine costs no more."""
    net = model.net
    if model.training or not hasattr(net, "forward_features"):
        return None
    p = next(model.parameters())
    graphs = graphs and p.device.type in precision.GRAPH_DEVICES
    if layer.reshape is not None:
        return _split_tokens(model, layer, graphs, compile) if graphs or compile else None
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


def _split_tokens(model: torch.nn.Module, layer: TargetLayer, graphs: bool, compile: bool) -> SplitNet | None:
    """A timm VisionTransformer split at the input of the block that holds the CAM layer, or None where the
    net is another kind (its forward_features may differ) or the halves do not give the net's own output."""
    from timm.models.vision_transformer import VisionTransformer

    net, parts = model.net, layer.name.split(".")
    # Other ViT kinds (Eva, BEiT...) have forward_features of their own; a whole block as the layer has no layer
    # inside the head to hook; grad checkpointing runs the blocks its own way: all keep the plain hook.
    if not isinstance(net, VisionTransformer) or net.grad_checkpointing or parts[0] != "blocks" or len(parts) < 3:
        return None
    size = getattr(net.patch_embed, "img_size", None)
    if size is None or not parts[1].isdigit():
        return None
    k = int(parts[1])
    trunk, head = _Tokens(net, k), _TokensHead(net, k)
    p = next(model.parameters())
    try:
        own = torch.Generator(device=p.device).manual_seed(0)  # the caller's random stream stays where it was
        with torch.no_grad():  # a subclass whose forward_features adds a step would not match: keep the hook
            probe = model.prepare(torch.rand(2, 1, *size, device=p.device, dtype=p.dtype, generator=own))
            if not torch.allclose(head(trunk(probe)), net(probe), rtol=1e-4, atol=1e-5):
                return None
    except Exception:  # e.g. a net that takes other inputs: the hooked engine meets (and names) it, as for CNNs
        return None
    return SplitNet(model, trunk, graphs, compile, head=head)
