"""Is a cache current for its data and checkpoints? Answered without importing torch,
so a second `make demo` opens the explorer in about a second instead of re-checking models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.models.card import trained_on
from gradfaith_tui.models.registry import find_checkpoints
from gradfaith_tui.config import CamSettings
from gradfaith_tui.store.files import changed_masks, key_fingerprint, of_this_data
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.keys import CONSIST_RULE, checkpoint_identity, explanation_key


def _same_masks(reader: CacheReader, ds) -> bool:
    """The cache's lesion masks are the data's now: masks redrawn, or CSV boxes moved, since it was built are
    not part of the fingerprint, and precompute recomputes their metrics (pipeline.stored.refresh_masks)."""
    from gradfaith_tui.data.prepared import load_split
    from gradfaith_tui.store.schema import MASKS_NAME

    by_id = {s.case_id: s for s in ds.samples}
    ids = [r[0] for r in reader.con.execute("SELECT case_id FROM cases ORDER BY idx")]
    if any(i not in by_id for i in ids):
        return False
    try:
        stored = np.load(reader.root / MASKS_NAME, mmap_mode="r")
    except (OSError, ValueError):
        return False
    now = load_split([by_id[i] for i in ids], stored.shape[-1])
    return len(now) == len(ids) and not len(changed_masks(stored, reader.has_mask(), now.masks, now.has_mask))


def cache_is_current(data: Path, checkpoints: Path, cache: Path, names: list[str], seeds: list[int], epochs: int,
                     cam: CamSettings = CamSettings(), target: str = "pred", img_size: int | None = None) -> bool:
    """True when every checkpoint is trained for exactly `epochs` on this data and fully explained with these settings."""
    method = cam.method
    try:
        ds = discover(data)
        fingerprints = ds.fingerprints()
        ckpts = find_checkpoints(checkpoints, names, seeds)
        reader = CacheReader(cache, method)
    except GradfaithError:
        return False
    try:
        if not of_this_data(reader.meta, fingerprints) or len(ckpts) != len(names) * len(seeds):
            return False
        fingerprint = key_fingerprint(reader.meta)
        stored = {r["model_id"]: r["checkpoint_hash"] for r in reader.con.execute("SELECT model_id, checkpoint_hash FROM models")}
        for c in ckpts:
            if c.card.get("epochs_done", 0) != epochs or not trained_on(c.card, fingerprints):
                return False
            if img_size is not None and c.card.get("img_size") != img_size:  # trained at another size
                return False
            if stored.get(c.model_id) != checkpoint_identity(c.card):
                return False
        for c in ckpts:  # the stored explanation must have been made with today's settings
            row = reader.con.execute("SELECT key, layer, settings FROM explanations WHERE model_id=? AND method=?",
                                     (c.model_id, method)).fetchone()
            if row is None or row["key"] != explanation_key(checkpoint_identity(c.card), fingerprint, method, row["layer"],
                                                            cam.tau, cam.baseline, target, cam.deep_steps, cam.engine):
                return False
            # Consist by an older rule: precompute redoes it alone, from the stored maps
            if len(seeds) > 1 and json.loads(row["settings"] or "{}").get("consist_rule") != CONSIST_RULE:
                return False
        if cam.sanity_cases and any(reader.con.execute("SELECT 1 FROM sanity WHERE model_id=? AND method=?",
                                                       (c.model_id, method)).fetchone() is None
                                    for c in ckpts if c.card["seed"] == min(seeds)):
            return False
        done = dict(reader.con.execute(
            "SELECT e.model_id, COUNT(m.idx) FROM explanations e LEFT JOIN metrics m ON m.expl_id = e.expl_id "
            "AND m.name = 'faith' WHERE e.method = ? GROUP BY e.model_id", (method,)).fetchall())
        if len(seeds) > 1:  # Consist is written last; a run killed before it is not finished
            consist = dict(reader.con.execute(
                "SELECT e.model_id, COUNT(m.idx) FROM explanations e JOIN metrics m ON m.expl_id = e.expl_id "
                "AND m.name = 'consist' WHERE e.method = ? GROUP BY e.model_id", (method,)).fetchall())
            if any(consist.get(c.model_id) != reader.n_cases for c in ckpts):
                return False
        return all(done.get(c.model_id) == reader.n_cases for c in ckpts) and _same_masks(reader, ds)
    finally:
        reader.close()
