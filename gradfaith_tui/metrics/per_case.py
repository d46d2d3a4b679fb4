"""Every default metric for one explained batch, as arrays ready for the cache."""

from __future__ import annotations

import numpy as np
import torch

from gradfaith_tui.cam.fast_gradcam import Explained
from gradfaith_tui.cam.methods import upsample
from gradfaith_tui.metrics.faithfulness import faith, remove
from gradfaith_tui.metrics.localization import loc_acc, mask_iou, pointing_game, relevance_mass, relevance_rank
from gradfaith_tui.metrics.perturbation import deletion_insertion
from gradfaith_tui.metrics.shortcuts import border_band, heat_share


@torch.no_grad()
def batch_metrics(model, x: torch.Tensor, ex: Explained, masks: np.ndarray, body: np.ndarray, lungs: np.ndarray,
                  tau: float = 0.5, baseline: str = "black", deep_steps: int = 0) -> dict[str, np.ndarray]:
    """masks, body, lungs: (B, S, S) bool at the input size S. NaN marks a metric that does not apply."""
    size = x.shape[-1]
    up = upsample(ex.maps, size).to(x.device)
    if ex.faith_prob is None or baseline != "black":
        ex.faith_prob, ex.faith_logit = faith(model, x, ex.logits, up, ex.targets, baseline)
    heat = up.cpu().numpy()
    out = {"faith": ex.faith_prob.cpu().numpy(), "faith_logit": ex.faith_logit.cpu().numpy(),
           "locacc": loc_acc(heat, masks, tau), "iou": mask_iou(heat, masks, tau),
           "pointing_game": pointing_game(heat, masks), "relevance_mass": relevance_mass(heat, masks),
           "relevance_rank": relevance_rank(heat, masks)}
    band = border_band(heat.shape[1:])
    out["border_heat"] = np.array([heat_share(h, band) for h in heat])
    out["outside_body_heat"] = np.array([heat_share(h, ~b) for h, b in zip(heat, body)])
    out["outside_lung_heat"] = np.array([heat_share(h, ~l) if l.any() else np.nan for h, l in zip(heat, lungs)])
    # Counterfactual: keep only the lung fields; a prediction that changes leaned on context outside them.
    keep = torch.from_numpy(lungs).to(x.device).float()
    lungs_only = model(remove(x, 1 - keep, "black")).float().argmax(1)
    flip = (lungs_only != ex.logits.argmax(1)).float().cpu().numpy()
    out["lungs_only_flip"] = np.where(lungs.any(axis=(1, 2)), flip, np.nan)
    if deep_steps:
        d, i = deletion_insertion(model, x, up, ex.targets, deep_steps)
        out["deletion_auc"], out["insertion_auc"] = d.cpu().numpy(), i.cpu().numpy()
    return out
