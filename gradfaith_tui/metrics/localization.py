"""Localisation metrics and heat shares: maps against masks, batch-first, in torch on the maps' device.

Each takes (B, H, W) maps and (B, H, W) masks (tensors or arrays; maps at mask resolution) and returns a
(B,) tensor on the same device, NaN where the metric does not apply. No per-case Python loops: on a GPU
the whole batch's metrics cost less than its forward pass, so precompute keeps the engine's pace.

A flat map (one value everywhere: Grad-CAM's all-zero map) points nowhere: its binarised region is empty
(LocAcc and IoU 0), it wins no pointing game, and its heat counts as spread evenly (shares and ranks at
chance). Ties among pixels never favour one place: ranks take the expected share over the tied pixels.
"""

from __future__ import annotations

import numpy as np
import torch

Maps = torch.Tensor | np.ndarray


def _maps(maps: Maps) -> torch.Tensor:
    return (maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))).float()


def _bool(masks: Maps, device: torch.device | None = None) -> torch.Tensor:
    m = masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(masks))
    return m.to(device or m.device, non_blocking=True).bool()


def _nan_without(masks: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(masks.flatten(-2).any(-1), values, torch.full_like(values, float("nan")))


def normalise(maps: Maps) -> torch.Tensor:
    """Min-max per map to [0, 1]; a constant map becomes all zeros."""
    m = _maps(maps)
    lo = m.amin(dim=(-2, -1), keepdim=True)
    span = m.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / torch.where(span > 0, span, 1), 0.0)


def binarise(maps: Maps, tau: float = 0.5) -> torch.Tensor:
    return normalise(maps) >= tau


def loc_acc(maps: Maps, masks: Maps, tau: float = 0.5) -> torch.Tensor:
    """Paper eq. 4 per case: |binarised CAM ∩ M| / |M|. NaN where the mask is empty."""
    b = binarise(maps, tau)
    m = _bool(masks, b.device)
    inter = (b & m).sum(dim=(-2, -1)).float()
    return _nan_without(m, inter / m.sum(dim=(-2, -1)).clamp(min=1))


def iou(a: Maps, b: Maps) -> torch.Tensor:
    """Intersection over union of boolean masks per case; NaN where both are empty (two flat maps agree on
    nothing: Consist is undefined there, not perfect)."""
    a = _bool(a)
    b = _bool(b, a.device)
    inter = (a & b).sum(dim=(-2, -1)).float()
    union = (a | b).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), float("nan"))


def mask_iou(maps: Maps, masks: Maps, tau: float = 0.5) -> torch.Tensor:
    """IoU of the binarised CAM with the lesion mask; NaN where the mask is empty."""
    b = binarise(maps, tau)
    m = _bool(masks, b.device)
    return _nan_without(m, iou(b, m))


POINTING_TOLERANCE = 15 / 224  # Zhang et al.'s 15 px at 224 px, as a share of the side


def pointing_game(maps: Maps, masks: Maps, tolerance: float = POINTING_TOLERANCE) -> torch.Tensor:
    """1.0 where the map's hottest pixel lies in the mask or within the tolerance of it (Euclidean, pixel
    centres), else 0.0; NaN without a mask."""
    m = _maps(maps)
    k = _bool(masks, m.device)
    b, h, w = m.shape
    peak = m.flatten(1).argmax(1)
    ys = torch.arange(h, device=m.device).view(1, h, 1) - (peak // w).view(b, 1, 1)
    xs = torch.arange(w, device=m.device).view(1, 1, w) - (peak % w).view(b, 1, 1)
    d2 = torch.where(k, ys * ys + xs * xs, torch.iinfo(torch.int64).max).flatten(1).amin(1)
    flat = m.flatten(1).amax(1) == m.flatten(1).amin(1)  # no hottest pixel: argmax would pick the corner
    return _nan_without(k, ((d2 <= (tolerance * w) ** 2) & ~flat).float())


def heat_share(heat: Maps, region: Maps) -> torch.Tensor:
    """Share of the non-negative heat inside region; an all-zero map's heat counts as spread evenly (the
    region's share of the area), as a flat map's is."""
    h = _maps(heat).clamp(min=0)
    r = _bool(region, h.device)
    total = h.sum(dim=(-2, -1))
    even = r.float().mean(dim=(-2, -1))
    return torch.where(total > 0, (h * r).sum(dim=(-2, -1)) / total.clamp(min=1e-30), even)


def relevance_mass(maps: Maps, masks: Maps) -> torch.Tensor:
    """Share of the (non-negative) heat that falls inside the mask; NaN without a mask."""
    m = _maps(maps)
    k = _bool(masks, m.device)
    return _nan_without(k, heat_share(m, k))


def relevance_rank(maps: Maps, masks: Maps) -> torch.Tensor:
    """Of the K hottest pixels (K = mask area), the share inside the mask; NaN without a mask. Pixels tied
    at the K-th value share the places left: each counts in proportion (a flat map scores the mask's share)."""
    m = _maps(maps).flatten(1)
    k = _bool(masks, m.device).flatten(1)
    area = k.sum(1)
    v = _kth_largest(m, area.clamp(min=1))[:, None]
    above, tied = m > v, m == v
    left = (area - above.sum(1)).float()
    hits = (above & k).sum(1).float() + left * (tied & k).sum(1).float() / tied.sum(1).clamp(min=1).float()
    return torch.where(area > 0, hits / area.clamp(min=1), float("nan"))


def _kth_largest(m: torch.Tensor, kth: torch.Tensor, sort: bool | None = None) -> torch.Tensor:
    """Each row's kth[i]-largest value (sort: the GPU's way, the default there)."""
    if m.is_cuda if sort is None else sort:  # one batched sort: microseconds on a GPU
        return m.sort(dim=1, descending=True).values.gather(1, (kth - 1)[:, None])[:, 0]
    # On the CPU torch's sort is ~25x slower than a partial selection at 224 px.
    mn, kn = m.numpy(), kth.numpy()
    return torch.tensor([-np.partition(-mn[i], a - 1)[a - 1] for i, a in enumerate(kn)], dtype=m.dtype)
