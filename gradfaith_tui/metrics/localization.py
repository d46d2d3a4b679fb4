"""Localisation metrics and heat shares: maps against masks, batch-first, in torch on the maps' device.

Each takes (B, H, W) maps and (B, H, W) masks (tensors or arrays; maps at mask resolution) and returns a
(B,) tensor on the same device, NaN where the metric does not apply. No per-case Python loops: on a GPU
the whole batch's metrics cost less than its forward pass, so precompute keeps the engine's pace.
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
    """Intersection over union of boolean masks per case; 1.0 where both are empty."""
    a = _bool(a)
    b = _bool(b, a.device)
    inter = (a & b).sum(dim=(-2, -1)).float()
    union = (a | b).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), 1.0)


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
    return _nan_without(k, (d2 <= (tolerance * w) ** 2).float())


def heat_share(heat: Maps, region: Maps) -> torch.Tensor:
    """Share of the non-negative heat inside region (0 for an all-zero map)."""
    h = _maps(heat).clamp(min=0)
    r = _bool(region, h.device)
    total = h.sum(dim=(-2, -1))
    return torch.where(total > 0, (h * r).sum(dim=(-2, -1)) / total.clamp(min=1e-30), 0.0)


def relevance_mass(maps: Maps, masks: Maps) -> torch.Tensor:
    """Share of the (non-negative) heat that falls inside the mask; NaN without a mask."""
    m = _maps(maps)
    k = _bool(masks, m.device)
    return _nan_without(k, heat_share(m, k))


def relevance_rank(maps: Maps, masks: Maps) -> torch.Tensor:
    """Of the K hottest pixels (K = mask area), the share inside the mask; NaN without a mask."""
    m = _maps(maps).flatten(1)
    k = _bool(masks, m.device).flatten(1)
    area = k.sum(1)
    return torch.where(area > 0, _inside_top_k(m, k, area, m.is_cuda) / area.clamp(min=1), float("nan"))


def _inside_top_k(m: torch.Tensor, k: torch.Tensor, area: torch.Tensor, sort: bool) -> torch.Tensor:
    """How many of each row's area[i] hottest pixels lie in its mask."""
    if sort:  # one batched sort: microseconds on a GPU
        inside = k.gather(1, m.argsort(dim=1, descending=True)).float().cumsum(1)  # in-mask among the top 1, 2, ...
        return inside.gather(1, (area - 1).clamp(min=0)[:, None])[:, 0]
    # On the CPU torch's sort is ~25x slower than a partial selection at 224 px.
    mn, kn, an = m.numpy(), k.numpy(), area.numpy()
    return torch.tensor([kn[i, np.argpartition(-mn[i], a - 1)[:a]].sum() if a else 0 for i, a in enumerate(an)],
                        dtype=torch.float32)
