"""Every default metric for one explained batch, as arrays ready for the cache."""

from __future__ import annotations

import numpy as np
import torch

from gradfaith_tui.cam.fast_gradcam import Explained
from gradfaith_tui.cam.methods import upsample
from gradfaith_tui.metrics.faithfulness import faith, remove
from gradfaith_tui.metrics.localization import (heat_share, loc_acc, mask_iou, pointing_game, relevance_mass,
                                                relevance_rank)
from gradfaith_tui.metrics.perturbation import deletion_insertion
from gradfaith_tui.metrics.shortcuts import border_band
from gradfaith_tui.models.precision import autocast


@torch.no_grad()
def batch_metrics(model, x: torch.Tensor, ex: Explained, masks: np.ndarray, body: np.ndarray, lungs: np.ndarray,
                  tau: float = 0.5, baseline: str = "black", deep_steps: int = 0,
                  shortcut_regions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """masks, body, lungs: (B, S, S) bool at the input size S. NaN marks a metric that does not apply.

    shortcut_regions (phantoms): where a planted shortcut sits. Removing it is the ground truth a map is
    judged against: did the prediction depend on it, and did the map show it?

    Everything runs batched on the model's device; the values cross to the host once, at the end.
    """
    size, dev = x.shape[-1], x.device
    heat = upsample(ex.maps, size).to(dev)
    # Faith's masked forward follows the CAM while the batch is still on the device (the fused pass).
    faith_prob, faith_logit = faith(model, x, ex.logits, heat, ex.targets, baseline)
    masks, body, lungs = (torch.from_numpy(np.ascontiguousarray(a)).to(dev, non_blocking=True) for a in (masks, body, lungs))
    out = {"faith": faith_prob, "faith_logit": faith_logit,
           "locacc": loc_acc(heat, masks, tau), "iou": mask_iou(heat, masks, tau),
           "pointing_game": pointing_game(heat, masks), "relevance_mass": relevance_mass(heat, masks),
           "relevance_rank": relevance_rank(heat, masks),
           "border_heat": heat_share(heat, torch.from_numpy(border_band(heat.shape[1:])).to(dev)),
           "outside_body_heat": heat_share(heat, ~body)}
    has_lungs = lungs.flatten(1).any(1)
    nan = torch.full((len(x),), float("nan"), device=dev)
    out["outside_lung_heat"] = torch.where(has_lungs, heat_share(heat, ~lungs), nan)
    # Counterfactual: keep only the lung fields; a prediction that changes leaned on context outside them.
    with autocast(dev):  # as the engine's passes
        lungs_only = model(remove(x, 1 - lungs[:, None].float(), "black")).float().argmax(1)
    out["lungs_only_flip"] = torch.where(has_lungs, (lungs_only != ex.logits.argmax(1)).float(), nan)
    if shortcut_regions is not None:
        out.update(_planted_shortcut(model, x, ex, heat, torch.from_numpy(np.ascontiguousarray(shortcut_regions)).to(dev), nan))
    if deep_steps:
        out["deletion_auc"], out["insertion_auc"] = deletion_insertion(model, x, heat, ex.targets, deep_steps)
    names = list(out)
    values = torch.stack([out[k].float() for k in names]).double().cpu().numpy()  # one transfer
    return dict(zip(names, values))


def _planted_shortcut(model, x: torch.Tensor, ex: Explained, heat: torch.Tensor, region: torch.Tensor,
                      nan: torch.Tensor) -> dict[str, torch.Tensor]:
    """Heat on the planted shortcut, and the target probability's drop (and any flip) when it is painted out."""
    has = region.flatten(1).any(1)
    with autocast(x.device):
        painted = model(remove(x, region[:, None].float(), "black")).float()
    t = ex.targets.long()[:, None]
    drop = torch.softmax(ex.logits, 1).gather(1, t)[:, 0] - torch.softmax(painted, 1).gather(1, t)[:, 0]
    flip = (painted.argmax(1) != ex.logits.argmax(1)).float()
    return {"shortcut_heat": torch.where(has, heat_share(heat, region), nan),
            "shortcut_drop": torch.where(has, drop, nan), "shortcut_flip": torch.where(has, flip, nan),
            "shortcut_area": torch.where(has, region.float().mean(dim=(1, 2)), nan)}
