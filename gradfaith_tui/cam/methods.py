"""CAM methods from pytorch-grad-cam by name, kept at the layer's native resolution.

The library min-max normalises each map and resizes it to the input; we keep the native grid
(smaller to store, honest about what the method resolves) and upsample where a metric needs pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gradfaith_tui.errors import GradfaithError

METHOD_NAMES = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam")


def method_class(name: str):
    import pytorch_grad_cam as pgc

    classes = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
               "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM, "scorecam": pgc.ScoreCAM}
    if name not in classes:
        raise GradfaithError(f"--method: unknown CAM method '{name}' (choose from {', '.join(METHOD_NAMES)})")
    base = classes[name]
    if name == "scorecam":
        _quiet_scorecam()

    class Native(base):
        def get_target_width_height(self, input_tensor):  # None: scale_cam_image keeps the native grid
            return None

    Native.__name__ = base.__name__
    return Native


def _quiet_scorecam() -> None:
    """ScoreCAM draws a tqdm bar per batch on stderr, through and over precompute's own progress bars."""
    import types

    import pytorch_grad_cam.score_cam as score_cam

    score_cam.tqdm = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)


def cam_batch(model, layer, x: torch.Tensor, targets: np.ndarray | None, method: str = "gradcam") -> tuple[np.ndarray, torch.Tensor]:
    """Maps (B, h, w) in [0, 1] for the given target classes (None: the predicted ones), and the model's logits for x."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = method_class(method)
    with cls(model=model, target_layers=[layer.module], reshape_transform=layer.reshape) as cam:
        maps = cam(input_tensor=x, targets=None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets])
        logits = cam.outputs.detach()
    return maps.astype(np.float32), logits


def upsample(maps: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Native maps (B, h, w) -> (B, size, size), bilinear with half-pixel centres (as cv2 and PIL)."""
    t = torch.as_tensor(maps).float()
    if t.shape[-1] == size and t.shape[-2] == size:
        return t
    return F.interpolate(t[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
