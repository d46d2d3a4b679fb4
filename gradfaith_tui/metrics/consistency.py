"""Explanation consistency across training seeds (paper eq. 6)."""

from __future__ import annotations

import numpy as np
import torch

from gradfaith_tui.metrics.localization import binarise, iou


def consist(maps_by_seed: list[np.ndarray], tau: float = 0.5, ref: int = 0,
            targets_by_seed: list[np.ndarray] | None = None) -> np.ndarray:
    """Per case: mean IoU of each other seed's binarised map with the reference seed's, over the seeds where
    it is defined (NaN where both maps are flat). Needs >= 2 seeds.

    targets_by_seed: the class each seed's map explains, per case. Eq. 6 compares maps of one class c, so a seed
    that explains another class than the reference seed (with the predicted class as target, a seed that
    predicts otherwise) is left out of that case's mean; NaN where every other seed is.
    """
    if len(maps_by_seed) < 2:
        raise ValueError("Consist needs maps from at least two seeds")
    ref_b = binarise(maps_by_seed[ref], tau)
    others = []
    for r, m in enumerate(maps_by_seed):
        if r == ref:
            continue
        v = iou(binarise(m, tau), ref_b).double()
        if targets_by_seed is not None:
            same = torch.from_numpy(np.asarray(targets_by_seed[r]) == np.asarray(targets_by_seed[ref])).to(v.device)
            v = torch.where(same, v, torch.nan)
        others.append(v)
    return torch.stack(others).nanmean(0).cpu().numpy()
