"""A dataset read into arrays per split, with bad files skipped (or fatal with strict)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gradfaith_tui.data.dataset import Dataset, Sample
from gradfaith_tui.data.duplicates import exact_groups, label_conflicts, pair_text
from gradfaith_tui.data.imageio import boxes_mask, read_grey, read_mask, to_square
from gradfaith_tui.data.splitfile import find_saved, read_split, verify, write_split
from gradfaith_tui.data.splits import split_hash, split_samples
from gradfaith_tui.errors import DataError


@dataclass
class SplitArrays:
    samples: list[Sample]
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool
    has_mask: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N,) int64
    shortcut_regions: np.ndarray | None = None  # (N, S, S) bool where a planted shortcut sits; None: no such truth

    def __len__(self) -> int:
        return len(self.samples)


def read_sample(s: Sample, mask_problems: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The slice at its original size and its lesion mask (file and/or CSV boxes), or None without one.

    A slice that cannot be read raises DataError. A mask that cannot be used (another size than its image, a
    box off it, an unreadable file) raises too, unless mask_problems is given: then it is noted there and
    the slice comes without a mask, as the image itself is fine."""
    grey = read_grey(s.path, s.window)
    try:
        mask = read_mask(s.mask_path, grey.shape) if s.mask_path is not None else None
        if s.boxes:
            box = boxes_mask(s.boxes, grey.shape, str(s.path))
            mask = box if mask is None else mask | box
    except DataError as exc:
        if mask_problems is None:
            raise
        mask_problems.append(str(exc))
        mask = None
    return grey, mask


def load_split(samples: list[Sample], size: int, strict: bool = False,
               warn: Callable[[str], None] = lambda msg: None, split: str = "", source: Path | None = None) -> SplitArrays:
    """Read and resize every sample; a bad file is skipped with a warning naming it, or raised if strict.
    split and source (the saved split file) name an empty split in its error."""
    kept, imgs, masks, has, regions = [], [], [], [], []
    for s in samples:
        mask_problems = None if strict else []
        try:
            grey, mask = read_sample(s, mask_problems)
        except DataError as exc:
            if strict:
                raise
            warn(f"skipped {exc}")
            continue
        for problem in mask_problems or ():
            warn(f"{problem}: mask ignored, the slice is kept without one")
        kept.append(s)
        imgs.append(to_square(grey, size))
        masks.append(to_square(mask, size, is_mask=True) if mask is not None else np.zeros((size, size), bool))
        has.append(bool(masks[-1].any()))  # an empty mask (a black PNG) marks no lesion: nothing to localise
        if s.shortcut_box is not None:  # the same resize policy as the masks, so it lines up with the CAM
            try:
                region = to_square(boxes_mask((s.shortcut_box,), grey.shape, str(s.path)), size, is_mask=True)
            except DataError as exc:  # a box off the image: keep the case, without this truth
                warn(f"{exc} (shortcut_box ignored)")
                region = None
            regions.append(region)
        else:
            regions.append(None)
    if not kept:
        which = f"the {split} split" + (f" of {source}" if source else "") if split else "this split"
        why = ("no images are assigned to it: too few slices or patients to split 60/20/20, or a hand-edited split"
               if not samples else f"none of its {len(samples)} files could be read")
        raise DataError(f"{which} holds no readable images ({why}; `gradfaith-tui data check DATA` shows the counts)")
    truth = None
    if any(r is not None for r in regions):
        truth = np.stack([r if r is not None else np.zeros((size, size), bool) for r in regions])
    return SplitArrays(kept, np.stack(imgs), np.stack(masks), np.array(has, bool),
                       np.array([s.label for s in kept], np.int64), truth)


@dataclass
class Prepared:
    fingerprint: str
    split_seed: int
    split_hash: str
    assignment: dict[str, str]
    split_file: Path | None = None
    identical: dict = field(default_factory=dict)  # what identical files mean for this split: identical_summary()
    aliases: tuple[str, ...] = ()  # what earlier versions called these data (Dataset.fingerprints)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Every fingerprint a checkpoint or cache of these data may carry, today's first."""
        return (self.fingerprint, *self.aliases)

    def samples(self, ds: Dataset, split: str) -> list[Sample]:
        return [s for s in ds.samples if self.assignment.get(s.case_id) == split]


def prepare(ds: Dataset, split_seed: int = 0, warn: Callable[[str], None] = lambda msg: None,
            force: bool = False) -> Prepared:
    """The saved split for this seed, checked against the data; made and saved on first use (or with force)."""
    saved = None if force else find_saved(ds, split_seed)
    if saved is not None:
        assignment = verify(ds, saved, read_split(saved), warn)
    else:
        assignment = split_samples(ds.samples, split_seed, ds.file_sha1())
        saved = write_split(ds, split_seed, assignment, warn)
    identical = identical_summary(ds, assignment)
    for line in identical_warnings(identical):
        warn(line)
    fingerprint, *aliases = ds.fingerprints()
    return Prepared(fingerprint, split_seed, split_hash(assignment), assignment, saved, identical, tuple(aliases))


def identical_summary(ds: Dataset, assignment: dict[str, str]) -> dict:
    """Groups of byte-identical files: how many, how many span splits, how many disagree on the label."""
    groups = exact_groups({k: v for k, v in ds.file_sha1().items() if v})
    conflicts = label_conflicts(groups, {s.case_id: s.label for s in ds.samples})
    return {"groups": len(groups), "across_splits": sum(len({assignment.get(c) for c in g}) > 1 for g in groups),
            "label_conflicts": len(conflicts), "conflict_examples": [g[:2] for g in conflicts[:3]]}


def identical_warnings(summary: dict) -> list[str]:
    def groups(k: int, verb: str) -> str:
        one = verb[:-1] + "ies" if verb.endswith("y") else verb + "s"
        return f"1 group of identical files {one}" if k == 1 else f"{k} groups of identical files {verb}"

    out = []
    if summary["label_conflicts"]:
        eg = pair_text(summary["conflict_examples"][0])
        out.append(f"{groups(summary['label_conflicts'], 'carry')} different labels (e.g. {eg}): "
                   "all but one copy in each is mislabelled, and a model cannot get both right")
    if summary["across_splits"]:
        out.append(f"{groups(summary['across_splits'], 'span')} train/val/test: test scores are "
                   "inflated (a split saved now keeps copies together; `data split --force` re-splits)")
    return out
