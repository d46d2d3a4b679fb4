"""Exact (sha1) and near (perceptual hash) duplicate slices across splits: the leakage a slice-level
split of a dataset without patient ids cannot rule out."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

HASH_SIZE = 16  # 256-bit pHash: 64 bits cannot tell CT slices of different patients apart
NEAR_BITS = 12  # Hamming distance counted as "near"; adjacent slices of a patient fall within it
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def phash_bits(im) -> np.ndarray:
    """Packed 256-bit perceptual hash of a PIL image."""
    import imagehash

    return np.packbits(imagehash.phash(im, hash_size=HASH_SIZE).hash.flatten())


def exact_groups(sha: dict[str, str]) -> list[list[str]]:
    """case_ids sharing identical file bytes, as sorted groups of two or more."""
    by = defaultdict(list)
    for cid, h in sha.items():
        by[h].append(cid)
    return sorted(sorted(g) for g in by.values() if len(g) > 1)


def pair_text(ids: list[str]) -> str:
    """Case ids joined by " = ", their shared leading folders said once: a nested download names its dataset
    folder twice in every id, which would otherwise fill the line."""
    parts = [cid.split("/") for cid in ids]
    shared = 0
    while all(len(p) > shared + 1 for p in parts) and len({p[shared] for p in parts}) == 1:
        shared += 1
    text = " = ".join("/".join(p[shared:]) for p in parts)
    return f"{text} (in {'/'.join(parts[0][:shared])}/)" if shared else text


def label_conflicts(groups: list[list[str]], label_of: dict[str, int | None]) -> list[list[str]]:
    """The identical-file groups whose copies carry different labels: all but one copy is mislabelled."""
    return [g for g in groups if len({label_of.get(c) for c in g}) > 1]


def near_pairs(hashes: dict[str, np.ndarray], split_of: dict[str, str], limit: int = NEAR_BITS) -> list[tuple[str, str, int]]:
    """Pairs of slices in different splits whose hashes differ in at most `limit` bits, closest first."""
    ids = sorted(hashes)
    if len(ids) < 2:
        return []
    codes = np.stack([hashes[i] for i in ids])
    splits = np.array([split_of.get(i, "") for i in ids])
    out = []
    for start in range(0, len(ids), 256):  # chunks keep memory flat for thousands of slices
        block = codes[start:start + 256]
        dist = _POPCOUNT[block[:, None, :] ^ codes[None, :, :]].sum(2, dtype=np.int32)
        rows, cols = np.nonzero(dist <= limit)
        for r, c in zip(rows + start, cols):
            if r < c and splits[r] != splits[c]:
                out.append((ids[r], ids[c], int(dist[r - start, c])))
    return sorted(out, key=lambda t: (t[2], t[0], t[1]))
