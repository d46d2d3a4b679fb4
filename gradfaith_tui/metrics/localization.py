"""Localisation metrics on maps and masks (NumPy, batch-first). Maps are at mask resolution."""

from __future__ import annotations

import numpy as np


def normalise(maps: np.ndarray) -> np.ndarray:
    """Min-max per map to [0, 1]; a constant map becomes all zeros."""
    m = np.asarray(maps, dtype=np.float32)
    lo = m.min(axis=(-2, -1), keepdims=True)
    span = m.max(axis=(-2, -1), keepdims=True) - lo
    return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def binarise(maps: np.ndarray, tau: float = 0.5) -> np.ndarray:
    return normalise(maps) >= tau


def loc_acc(maps: np.ndarray, masks: np.ndarray, tau: float = 0.5) -> np.ndarray:
    """Paper eq. 4 per case: |binarised CAM ∩ M| / |M|. NaN where the mask is empty."""
    b, m = binarise(maps, tau), np.asarray(masks, bool)
    inter = (b & m).sum(axis=(-2, -1)).astype(np.float64)
    area = m.sum(axis=(-2, -1))
    return np.where(area > 0, inter / np.maximum(area, 1), np.nan)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boolean masks per case; 1.0 where both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mask_iou(maps: np.ndarray, masks: np.ndarray, tau: float = 0.5) -> np.ndarray:
    """IoU of the binarised CAM with the lesion mask; NaN where the mask is empty."""
    m = np.asarray(masks, bool)
    return np.where(m.any(axis=(-2, -1)), iou(binarise(maps, tau), m), np.nan)


POINTING_TOLERANCE = 15 / 224  # Zhang et al.'s 15 px at 224 px, as a share of the side


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """1.0 where the map's hottest pixel lies in the mask or within the tolerance of it, else 0.0; NaN without a mask."""
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(maps, np.float32)
    masks = np.asarray(masks, bool)
    out = np.full(len(m), np.nan)
    for i in range(len(m)):
        if masks[i].any():
            peak = np.unravel_index(m[i].argmax(), m[i].shape)
            dist = distance_transform_edt(~masks[i])[peak]  # 0 inside the mask
            out[i] = float(dist <= tolerance * m.shape[-1])
    return out


def relevance_mass(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the (non-negative) heat that falls inside the mask; NaN without a mask."""
    m = np.clip(np.asarray(maps, np.float64), 0, None)
    inside = (m * np.asarray(masks, bool)).sum(axis=(-2, -1))
    total = m.sum(axis=(-2, -1))
    ok = np.asarray(masks, bool).any(axis=(-2, -1))
    return np.where(ok, np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0), np.nan)


def relevance_rank(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Of the K hottest pixels (K = mask area), the share inside the mask; NaN without a mask."""
    m = np.asarray(maps, np.float32).reshape(len(maps), -1)
    mk = np.asarray(masks, bool).reshape(len(maps), -1)
    out = np.full(len(m), np.nan)
    for i in range(len(m)):
        k = int(mk[i].sum())
        if k:
            top = np.argpartition(-m[i], k - 1)[:k]
            out[i] = mk[i, top].mean()
    return out
