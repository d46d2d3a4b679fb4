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
    has_lungs, has_body = lungs.flatten(1).any(1), body.flatten(1).any(1)
    nan = torch.full((len(x),), float("nan"), device=dev)
    out["outside_lung_heat"] = torch.where(has_lungs, heat_share(heat, ~lungs), nan)
    planted = None if shortcut_regions is None else torch.from_numpy(np.ascontiguousarray(shortcut_regions)).to(dev)
    air = air_value(x, ~body if planted is None else ~body & ~planted)
    # Counterfactuals, in one forward: keep only the lung fields (the rest black); keep only the body, with
    # air where anything else was (a marker, text, the table). A prediction that changes leaned on what went.
    pred = ex.logits.argmax(1)
    with autocast(dev):  # as the engine's passes
        cf = model(torch.cat([remove(x, 1 - lungs[:, None].float(), "black"), replace(x, ~body, air)])).float().argmax(1)
    out["lungs_only_flip"] = torch.where(has_lungs, (cf[:len(x)] != pred).float(), nan)
    out["body_only_flip"] = torch.where(has_body, (cf[len(x):] != pred).float(), nan)
    if planted is not None:
        rows = np.flatnonzero(np.asarray(shortcut_regions).any(axis=(1, 2)))
        out.update(_planted_shortcut(model, x, ex, heat, planted, air, nan, rows))
    if deep_steps:
        out["deletion_auc"], out["insertion_auc"] = deletion_insertion(model, x, heat, ex.targets, deep_steps)
    names = list(out)
    values = torch.stack([out[k].float() for k in names]).double().cpu().numpy()  # one transfer
    return dict(zip(names, values))


def air_value(x: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1): each slice's median intensity over `outside` (air around the body); 0 where there is none.

    In a lung window air is mid-grey, not black, so black would paint in a new artefact rather than remove one.
    """
    vals = torch.where(outside, x[:, 0], float("nan")).flatten(1).nanmedian(1).values
    return torch.nan_to_num(vals, nan=0.0).view(-1, 1, 1, 1)


def replace(x: torch.Tensor, region: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    r = region[:, None].float()
    return x * (1 - r) + value * r


def _planted_shortcut(model, x: torch.Tensor, ex: Explained, heat: torch.Tensor, region: torch.Tensor,
                      air: torch.Tensor, nan: torch.Tensor, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Heat on the planted shortcut, and the target probability's drop (and any flip) when it is painted over
    with the slice's air. Only the marked rows go through the model: on the demo that is one slice in six."""
    has = region.flatten(1).any(1)
    drop, flip = nan.clone(), nan.clone()
    if len(rows):
        i = torch.from_numpy(rows).to(x.device)
        with autocast(x.device):
            painted = model(replace(x[i], region[i], air[i])).float()
        t = ex.targets[i].long()[:, None]
        drop[i] = torch.softmax(ex.logits[i], 1).gather(1, t)[:, 0] - torch.softmax(painted, 1).gather(1, t)[:, 0]
        flip[i] = (painted.argmax(1) != ex.logits[i].argmax(1)).float()
    return {"shortcut_heat": torch.where(has, heat_share(heat, region), nan), "shortcut_drop": drop,
            "shortcut_flip": flip, "shortcut_area": torch.where(has, region.float().mean(dim=(1, 2)), nan)}
