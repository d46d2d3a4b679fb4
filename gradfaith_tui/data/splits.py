"""Seeded, stratified 60/20/20 splits of the slices; whole patients stay in one split when patient ids exist."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from gradfaith_tui.data.dataset import Sample

SPLITS = ("train", "val", "test")
RATIOS = (0.6, 0.2, 0.2)


def split_samples(samples: list[Sample], seed: int = 0, file_sha1: dict[str, str | None] | None = None) -> dict[str, str]:
    """case_id -> 'train' | 'val' | 'test'. Groups are patients, or single slices without ids; with
    file_sha1, identical files also share a group, so a copy never sits in train while another is tested."""
    key = _group_keys(samples, file_sha1 or {})
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[key[s.case_id]].append(s)
    by_class: dict[int, list[str]] = defaultdict(list)
    for gid, members in groups.items():
        # A patient's class is its most severe slice label, so stratification follows the diagnosis.
        by_class[max(m.label or 0 for m in members)].append(gid)
    out: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for label in sorted(by_class):
        gids = sorted(by_class[label])
        rng.shuffle(gids)
        n = len(gids)
        # Cut where the slices, not the groups, come closest to 60/20/20: a patient with many slices weighs
        # more than one without an id. Groups of one size give the same cut as counting them.
        sizes = np.array([len(groups[g]) for g in gids])
        n_train = _closest_cut(sizes, RATIOS[0] * sizes.sum())
        n_val = _closest_cut(sizes[n_train:], RATIOS[1] * sizes.sum())
        if n >= 3:  # every split gets at least one group of every class that can spare it
            n_train = min(max(n_train, 1), n - 2)
            n_val = min(max(n_val, 1), n - n_train - 1)
        for i, gid in enumerate(gids):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            for m in groups[gid]:
                out[m.case_id] = split
    return out


def _closest_cut(sizes: np.ndarray, target: float) -> int:
    """How many of these groups, taken in order, hold the number of slices closest to target (fewer on a tie)."""
    cum = np.concatenate([[0], np.cumsum(sizes)])
    return int(np.argmin(np.abs(cum - target)))


def _group_keys(samples: list[Sample], file_sha1: dict[str, str | None]) -> dict[str, str]:
    """case_id -> group: its patient or itself, merged (union-find) across identical files."""
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first_of: dict[str, str] = {}
    base = {s.case_id: s.patient or f"slice:{s.case_id}" for s in samples}
    for s in samples:
        digest = file_sha1.get(s.case_id)
        if digest is None:
            continue
        if digest in first_of:
            a, b = sorted((root(base[first_of[digest]]), root(base[s.case_id])))
            parent[b] = a  # the smaller key wins, so the result does not depend on the order of samples
        else:
            first_of[digest] = s.case_id
    return {cid: root(g) for cid, g in base.items()}


def split_hash(assignment: dict[str, str]) -> str:
    h = hashlib.sha1("".join(f"{k}\0{v}\n" for k, v in sorted(assignment.items())).encode())
    return h.hexdigest()[:16]
