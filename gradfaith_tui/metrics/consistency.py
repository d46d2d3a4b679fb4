"""Explanation consistency across training seeds (paper eq. 6)."""

from __future__ import annotations

import numpy as np
import torch

from gradfaith_tui.metrics.localization import binarise, iou


def consist(maps_by_seed: list[np.ndarray], tau: float = 0.5, ref: int = 0) -> np.ndarray:
    """Per case: mean IoU of each other seed's binarised map with the reference seed's, over the seeds where
    it is defined (NaN where both maps are flat). Needs >= 2 seeds."""
    if len(maps_by_seed) < 2:
        raise ValueError("Consist needs maps from at least two seeds")
    ref_b = binarise(maps_by_seed[ref], tau)
    others = [iou(binarise(m, tau), ref_b) for r, m in enumerate(maps_by_seed) if r != ref]
    return torch.stack(others).double().nanmean(0).cpu().numpy()
