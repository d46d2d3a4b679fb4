"""Model-aware alternatives for ViTs: attention rollout (Abnar & Zuidema, 2020) and gradient-weighted rollout.

The paper finds Grad-CAM loses fidelity on ViT; these follow the attention through every block instead of
reading one layer's tokens, so their Faith can be compared with Grad-CAM's on the same cases.
"""

from __future__ import annotations

import torch

from gradfaith_tui.cam.fast_gradcam import Explained, normalise
from gradfaith_tui.config import ROLLOUT_METHODS  # noqa: F401 (engine and job import it from here)
from gradfaith_tui.errors import GradfaithError


def check_rollout(model: torch.nn.Module, method: str = "rollout", who: str = "") -> None:
    """Refuse a model rollout cannot explain (precompute asks before it makes the cache); who: its name."""
    net = model.net
    if not (hasattr(net, "blocks") and hasattr(net, "patch_embed") and hasattr(net.blocks[0], "attn")):
        raise GradfaithError(f"--method {method}: only for ViT-style models (timm blocks with attention)"
                             + (f"; {who} is not one (leave it out with --models, or use a CAM method)" if who else ""))


class AttentionRollout:
    """Context manager: switches timm's fused attention off to see the weights, and restores it on exit."""

    def __init__(self, model: torch.nn.Module, gradient: bool = False):
        check_rollout(model, "grad-rollout" if gradient else "rollout")
        net = model.net
        self.model, self.net, self.gradient = model, net, gradient
        self.forward = model  # the plain forward the maps are judged with
        self._attn: list[torch.Tensor] = []
        self._handles, self._fused = [], []

    def __enter__(self) -> "AttentionRollout":
        for blk in self.net.blocks:
            self._fused.append(getattr(blk.attn, "fused_attn", False))
            blk.attn.fused_attn = False  # timm then applies softmax and attn_drop explicitly
            self._handles.append(blk.attn.attn_drop.register_forward_hook(lambda m, i, o: self._attn.append(o)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for blk, fused in zip(self.net.blocks, self._fused):
            blk.attn.fused_attn = fused
        self._handles, self._fused = [], []

    def __call__(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> Explained:
        self._attn = []
        with torch.enable_grad():
            logits = self.model(x)
            tgt = logits.argmax(1) if targets is None else targets.to(x.device).long()
            grads = None
            if self.gradient:
                grads = torch.autograd.grad(logits.gather(1, tgt[:, None]).sum(), self._attn)
        n = self._attn[0].shape[-1]
        eye = torch.eye(n, device=x.device)
        result = eye.expand(x.shape[0], n, n).clone()
        for i, a in enumerate(self._attn):
            a = a.detach().float()
            if grads is not None:
                a = torch.relu(a * grads[i].float())  # keep what raises the target score
            a = a.mean(1)  # heads fused by their mean, as Abnar and Zuidema's rollout
            a = a + eye  # residual connections
            a = a / a.sum(-1, keepdim=True)
            result = a @ result
        prefix = getattr(self.net, "num_prefix_tokens", 1)
        gh, gw = self.net.patch_embed.grid_size
        rows = result[:, 0, prefix:] if prefix else result[:, prefix:, prefix:].mean(1)
        maps = normalise(rows.reshape(-1, gh, gw))
        return Explained(maps, logits.detach().float(), tgt)
