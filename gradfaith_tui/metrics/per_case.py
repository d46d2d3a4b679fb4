"""Every default metric for one explained batch, as arrays ready for the cache."""

from __future__ import annotations

import functools

import numpy as np
import torch

from gradfaith_tui.cam.fast_gradcam import Explained
from gradfaith_tui.cam.methods import upsample
from gradfaith_tui.metrics.faithfulness import remove, score_drop, shuffled
from gradfaith_tui.metrics.localization import (heat_share, loc_acc, mask_iou, pointing_game, relevance_mass,
                                                relevance_rank)
from gradfaith_tui.metrics.perturbation import deletion_insertion
from gradfaith_tui.metrics.readback import Pending
from gradfaith_tui.metrics.shortcuts import border_band
from gradfaith_tui.metrics.staging import Staged
from gradfaith_tui.models.precision import autocast, uses_amp


CONTROL_DRAWS = 4  # shuffled copies per map for Faith's control (--deep)


def batch_metrics(model, x: torch.Tensor, ex: Explained, masks: np.ndarray, body: np.ndarray, lungs: np.ndarray,
                  tau: float = 0.5, baseline: str = "black", deep_steps: int = 0,
                  shortcut_regions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """masks, body, lungs: (B, S, S) bool at the input size S. NaN marks a metric that does not apply.

    shortcut_regions (phantoms): where a planted shortcut sits. Removing it is the ground truth a map is
    judged against: did the prediction depend on it, and did the map show it?
    """
    values = device_metrics(model, Staged.of(x, masks, body, lungs, shortcut_regions), ex, tau, baseline, deep_steps)
    return Pending(ex.maps, ex.logits, values).wait().metrics  # one transfer, as precompute reads them back


@torch.no_grad()
def device_metrics(model, b: Staged, ex: Explained, tau: float = 0.5, baseline: str = "black",
                   deep_steps: int = 0) -> dict[str, torch.Tensor]:
    """Every default metric of a staged batch, left on its device, so the caller can stage the next batch
    before it waits for these (see metrics/staging.py)."""
    x = b.x
    size, dev, n = x.shape[-1], x.device, len(x)
    heat = upsample(ex.maps, size).to(dev)
    masks, body, lungs, planted = b.masks, b.body, b.lungs, b.regions
    out = mask_metrics(heat, masks, tau)
    out["border_heat"] = heat_share(heat, _border(heat.shape[1:], dev))
    has_lungs, has_body = lungs.flatten(1).any(1), body.flatten(1).any(1)
    nan = torch.full((n,), float("nan"), device=dev)
    out["outside_body_heat"] = torch.where(has_body, heat_share(heat, ~body), nan)  # no body found: no outside
    out["outside_lung_heat"] = torch.where(has_lungs, heat_share(heat, ~lungs), nan)
    air = air_value(x, ~body if planted is None else ~body & ~planted)
    # Forwards while the batch is still on the device (the fused pass): one of three edits of it, Faith's
    # (the CAM region removed, eq. 5), the lung fields only (the rest replaced by the same baseline, as the
    # issue defines it; black by default) and the body only (air where anything else was: a marker, text,
    # the table); and, on marked phantoms, one of the marked rows with the marker painted over with air.
    # A prediction that changes leaned on what went.
    i, k = b.marked_on_device, len(b.marked)
    edits = [torch.cat([remove(x, heat, baseline), remove(x, 1 - lungs[:, None].float(), baseline), replace(x, ~body, air)])]
    # Scores are compared at one precision: an engine whose clean pass ran in fp32 (the library's, rollout's)
    # gets its clean input scored in the bf16 pass too, else rounding alone reads as a drop or a flip.
    again = uses_amp(dev) and not ex.amp
    if again:
        edits[0] = torch.cat([edits[0], x])
    if k:
        edits.append(replace(x[i], planted[i], air[i]))
    # A GPU runs the three edits as one wide pass (a trunk replayed from CUDA graphs records that width,
    # cam/graphs.py) and the marked rows as another (from a quarter-size graph once they recur); a CPU in passes of the
    # batch's size, as it runs bigger batches slower (tinynet_e, 64 px: 3 x 64 images in 206 ms at once,
    # 163 ms in passes of 64).
    if dev.type != "cuda" and getattr(model, "graphed", None) is None:
        edits = list(torch.cat(edits).split(n))
    with autocast(dev):  # as the engine's passes
        logits = torch.cat([model(e) for e in edits]).float()
    masked, lungs_only, body_only = logits[:n], logits[n:2 * n], logits[2 * n:3 * n]
    clean = logits[3 * n:4 * n] if again else ex.logits
    painted = logits[3 * n + again * n:][:k]
    out["faith"], out["faith_logit"] = score_drop(clean, masked, ex.targets)
    pred = clean.argmax(1)
    out["lungs_only_flip"] = torch.where(has_lungs, (lungs_only.argmax(1) != pred).float(), nan)
    out["body_only_flip"] = torch.where(has_body, (body_only.argmax(1) != pred).float(), nan)
    if planted is not None:
        out.update(_planted_shortcut(clean, ex.targets, heat, planted, painted, i, nan))
    if deep_steps:
        with autocast(dev):  # as Faith's pass, so on a GPU the steps replay the trunk's graphs (of 2x the batch)
            out["deletion_auc"], out["insertion_auc"] = deletion_insertion(model, x, heat, ex.targets, deep_steps)
            # the control for Faith: the map's own cells at random places (same area removed), at its native
            # grid; the mean of a few draws, as one draw's drop varies with where the cells happen to land
            maps = ex.maps.float()
            drops = [score_drop(clean, model(remove(x, upsample(shuffled(maps, b.cases, k), size).to(dev),
                                                    baseline)).float(), ex.targets)[0] for k in range(CONTROL_DRAWS)]
        out["faith_shuffled"] = torch.stack(drops).mean(0)
    return out


def mask_metrics(heat: torch.Tensor, masks: torch.Tensor, tau: float = 0.5) -> dict[str, torch.Tensor]:
    """The metrics that read the lesion mask (NaN where a slice has none), from maps at input size: what
    precompute recomputes from the stored maps when masks change (pipeline/stored.py)."""
    return {"locacc": loc_acc(heat, masks, tau), "iou": mask_iou(heat, masks, tau),
            "pointing_game": pointing_game(heat, masks), "relevance_mass": relevance_mass(heat, masks),
            "relevance_rank": relevance_rank(heat, masks)}


@functools.lru_cache(maxsize=8)
def _border(shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(border_band(shape)).to(device)


def air_value(x: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1): each slice's median intensity over `outside` (air around the body); 0 where there is none.

    In a lung window air is mid-grey, not black, so black would paint in a new artefact rather than remove one.
    """
    vals = torch.where(outside, x[:, 0], float("nan")).flatten(1).nanmedian(1).values
    return torch.nan_to_num(vals, nan=0.0).view(-1, 1, 1, 1)


def replace(x: torch.Tensor, region: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    r = region[:, None].float()
    return x * (1 - r) + value * r


def _planted_shortcut(clean: torch.Tensor, targets: torch.Tensor, heat: torch.Tensor, region: torch.Tensor,
                      painted: torch.Tensor, rows: torch.Tensor, nan: torch.Tensor) -> dict[str, torch.Tensor]:
    """Heat on the planted shortcut, and the target probability's drop (and any flip) when it is painted over
    with the slice's air (`painted`: the logits of the marked `rows`, on the demo one slice in six)."""
    has = region.flatten(1).any(1)
    drop, flip = nan.clone(), nan.clone()
    if len(rows):
        drop[rows] = score_drop(clean[rows], painted, targets[rows])[0]
        flip[rows] = (painted.argmax(1) != clean[rows].argmax(1)).float()
    return {"shortcut_heat": torch.where(has, heat_share(heat, region), nan), "shortcut_drop": drop,
            "shortcut_flip": flip, "shortcut_area": torch.where(has, region.float().mean(dim=(1, 2)), nan)}
