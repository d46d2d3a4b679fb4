"""Batched Grad-CAM that stays on the device.

pytorch-grad-cam moves every batch to NumPy and back; here activations, gradients and maps stay on the
GPU, under bf16 autocast on CUDA, so Faith's masked forward (metrics/) can follow with no host round trip.
Autograd records only from the target layer on. Where that layer ends forward_features, the trunk runs
without autograd, with its plain BatchNorms folded into their convolutions (the ResNets'), and on CUDA
from a CUDA graph (cam/split.py, cam/graphs.py); a ViT's blocks before the layer's block run so too, and a
net with nothing to fold on a CPU keeps the plain hook. In fp32 it
computes exactly the library's Grad-CAM: weights = spatial mean of the gradients, ReLU of the weighted
sum, min-max per map (tests check Pearson r >= 0.99 against pytorch_grad_cam.GradCAM on every architecture).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradfaith_tui.cam.layers import TargetLayer
from gradfaith_tui.cam.split import SplitNet, split_at
from gradfaith_tui.models.precision import autocast


@dataclass
class Explained:
    maps: torch.Tensor  # (B, h, w) native grid, min-max normalised to [0, 1]
    logits: torch.Tensor  # (B, K) on the clean input, float32
    targets: torch.Tensor  # (B,) the class each map explains
    amp: bool = False  # logits from a pass under the device's autocast, as Faith's masked pass runs


def normalise(cam: torch.Tensor) -> torch.Tensor:
    """As pytorch-grad-cam's scale_cam_image: subtract the min, divide by (1e-7 + max)."""
    flat = cam.flatten(1)
    cam = cam - flat.min(1).values[:, None, None]
    return cam / (1e-7 + cam.flatten(1).max(1).values[:, None, None])


class FastGradCAM:
    """Use as a context manager: the forward hook is released on exit, as in pytorch-grad-cam."""

    def __init__(self, model: torch.nn.Module, layer: TargetLayer, fold: bool = True, graphs: bool = True,
                 compile: bool = False):
        """fold=False: no split (the hook, whole-model passes); graphs=False: no CUDA graphs (cam/graphs.py);
        compile=True: the split trunk through torch.compile (cam/compiled.py)."""
        self.model, self.layer, self.fold, self.graphs, self.compile = model, layer, fold, graphs, compile
        self._act: torch.Tensor | None = None
        self._handle = None
        self._frozen: list[torch.nn.Parameter] = []
        self.split: SplitNet | None = None

    def __enter__(self) -> "FastGradCAM":
        # Only the gradient at the target layer is needed: with the weights frozen, autograd records
        # nothing before the layer (no saved activations for the trunk), and the graph starts there
        # (at the split, or at the hook).
        self._frozen = [p for p in self.model.parameters() if p.requires_grad]
        for p in self._frozen:
            p.requires_grad_(False)
        try:
            self.split = split_at(self.model, self.layer, self.graphs, self.compile) if self.fold else None
        except BaseException:  # out of memory while folding or probing, say: leave the model as it was
            self.__exit__()
            raise
        if self.split is None or self.split.hooked:  # a ViT's split keeps the hook on the layer in its head
            self._handle = self.layer.module.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        if self.split is not None and self.split.compiled is not None:
            self.split.compiled.release()
        self.split = None

    @property
    def forward(self):
        """The plain forward the maps are judged with (Faith, counterfactuals): the split one where there is one
        (a CNN's folded trunk, a ViT's graphed blocks), which computes the same."""
        return self.model if self.split is None else self.split

    def _keep(self, module, inputs, output) -> torch.Tensor | None:
        if not torch.is_grad_enabled():  # a plain forward (Faith's) while the hook is on: leave it alone
            return None
        self._act = output.detach().requires_grad_(True)
        # A copy goes on, not the leaf itself: a layer whose output the next one changes in place (a BatchNorm
        # before an in-place ReLU, via --target-layer) would otherwise modify a leaf autograd needs.
        return self._act.clone()

    def __call__(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> Explained:
        if self.split is not None:  # the trunk without autograd, the graph from its output on
            with torch.no_grad(), autocast(x.device):
                act = self.split.features(x)
        with torch.enable_grad(), autocast(x.device):
            if self.split is not None and not self.split.hooked:
                act = act.detach().requires_grad_(True)
                logits = self.split.head(act)
            elif self.split is not None:  # the layer is inside the head: the hook keeps its output
                logits = self.split.head(act)
                act = self._act
            else:
                logits = self.model(x)
                act = self._act
            tgt = logits.argmax(1) if targets is None else targets.to(x.device).long()
            score = logits.float().gather(1, tgt[:, None]).sum()
            (grad,) = torch.autograd.grad(score, act)
        act, grad = act.detach().float(), grad.float()
        if self.layer.reshape is not None:  # ViT tokens -> (B, C, h, w)
            act, grad = self.layer.reshape(act), self.layer.reshape(grad)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        maps = normalise(torch.relu((weights * act).sum(1)))
        return Explained(maps, logits.detach().float(), tgt, amp=True)
