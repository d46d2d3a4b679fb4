"""One interface over the ways to explain a batch: our fused Grad-CAM, attention rollout, or any
pytorch-grad-cam method. Each returns native-resolution maps, the clean logits and the targets."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from gradfaith_tui.cam.fast_gradcam import Explained, FastGradCAM
from gradfaith_tui.cam.layers import TargetLayer
from gradfaith_tui.cam.methods import METHOD_NAMES, cam_batch
from gradfaith_tui.cam.rollout import ROLLOUT_METHODS, AttentionRollout
from gradfaith_tui.errors import GradfaithError

ALL_METHODS = METHOD_NAMES + ROLLOUT_METHODS
ENGINES = ("fast", "library")


class _Library:
    """pytorch-grad-cam, one batch at a time (hooks are opened and released per call by cam_batch)."""

    def __init__(self, model, layer: TargetLayer, method: str):
        self.model, self.layer, self.method = model, layer, method
        self.forward = model  # the plain forward the maps are judged with

    def __call__(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> Explained:
        # Without targets the library explains the argmax of the same forward, so no extra pass is needed.
        maps, logits = cam_batch(self.model, self.layer, x, None if targets is None else targets.cpu().numpy(), self.method)
        targets = logits.argmax(1) if targets is None else targets
        return Explained(torch.from_numpy(np.ascontiguousarray(maps)).to(x.device), logits.float(), targets.to(x.device))


@contextlib.contextmanager
def explainer(model, layer: TargetLayer, method: str = "gradcam", engine: str = "fast", fold: bool = True,
              compile: bool = False):
    """Yields explain(x, targets=None) -> Explained; explain.forward is the plain forward to judge the maps
    with (Faith, counterfactuals): the fast engine's folded trunk where it has one (fold=False: never),
    through torch.compile with compile=True (the fast engine's split trunk only)."""
    if method not in ALL_METHODS:
        raise GradfaithError(f"--method: unknown method '{method}' (choose from {', '.join(ALL_METHODS)})")
    if engine not in ENGINES:
        raise GradfaithError(f"--engine: '{engine}' (choose from {', '.join(ENGINES)})")
    if method in ROLLOUT_METHODS:
        with AttentionRollout(model, gradient=method == "grad-rollout") as r:
            yield r
    elif method == "gradcam" and engine == "fast":
        with FastGradCAM(model, layer, fold, compile=compile) as f:
            yield f
    else:
        yield _Library(model, layer, method)
