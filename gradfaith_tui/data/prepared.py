"""A dataset read into arrays per split, with bad files skipped (or fatal with strict)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gradfaith_tui.data.dataset import Dataset, Sample
from gradfaith_tui.data.imageio import read_grey, read_mask, to_square
from gradfaith_tui.data.splits import split_hash, split_samples
from gradfaith_tui.errors import DataError


@dataclass
class SplitArrays:
    samples: list[Sample]
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool
    has_mask: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.samples)


def load_split(samples: list[Sample], size: int, strict: bool = False,
               warn: Callable[[str], None] = lambda msg: None) -> SplitArrays:
    """Read and resize every sample; a bad file is skipped with a warning naming it, or raised if strict."""
    kept, imgs, masks, has = [], [], [], []
    for s in samples:
        try:
            grey = read_grey(s.path)
            mask = read_mask(s.mask_path, grey.shape) if s.mask_path is not None else None
        except DataError as exc:
            if strict:
                raise
            warn(f"skipped {exc}")
            continue
        kept.append(s)
        imgs.append(to_square(grey, size))
        masks.append(to_square(mask, size, is_mask=True) if mask is not None else np.zeros((size, size), bool))
        has.append(mask is not None)
    if not kept:
        raise DataError("no readable images left in this split")
    return SplitArrays(kept, np.stack(imgs), np.stack(masks), np.array(has, bool),
                       np.array([s.label for s in kept], np.int64))


@dataclass
class Prepared:
    fingerprint: str
    split_seed: int
    split_hash: str
    assignment: dict[str, str]

    def samples(self, ds: Dataset, split: str) -> list[Sample]:
        return [s for s in ds.samples if self.assignment.get(s.case_id) == split]


def prepare(ds: Dataset, split_seed: int = 0) -> Prepared:
    assignment = split_samples(ds.samples, split_seed)
    return Prepared(ds.fingerprint(), split_seed, split_hash(assignment), assignment)
