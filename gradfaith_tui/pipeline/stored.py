"""What precompute derives from the stored maps and metrics, with no model run: the mask metrics after lesion
masks changed, the suspects under today's rules, and Consist across seeds."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from gradfaith_tui.data.prepared import SplitArrays
from gradfaith_tui.store.files import changed_masks
from gradfaith_tui.store.writer import CacheWriter


def refresh_masks(writer: CacheWriter, arrays_at: Callable[[int], SplitArrays], warn: Callable[[str], None]) -> None:
    """Lesion masks added, redrawn or removed since the cache was built (they are not part of the data's
    fingerprint, so the cache and the checkpoints stay valid): the metrics that read them are recomputed from
    the stored maps, for every explanation in the cache, and the new masks stored. No model runs."""
    from gradfaith_tui.cam.methods import upsample
    from gradfaith_tui.metrics.per_case import mask_metrics

    old, old_has = writer.stored_masks()
    now = arrays_at(old.shape[-1])
    changed = changed_masks(old, old_has, now.masks, now.has_mask)
    if not len(changed):
        return
    updates = []
    for expl_id, size, tau in writer.explanations_by_size():
        rows = np.array(sorted(writer.done(expl_id) & set(changed.tolist())), np.int64)
        if not len(rows):
            continue
        maps, masks = writer.read_maps(expl_id), arrays_at(size).masks
        parts = [mask_metrics(upsample(maps[r], size), torch.from_numpy(masks[r]), tau)
                 for r in np.array_split(rows, -(-len(rows) // 256))]  # 256 maps at a time: bounded memory
        updates.append((expl_id, rows, {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}))
    writer.replace_masks(now.masks, now.has_mask, updates)
    warn(f"{writer.root}: lesion masks changed for {len(changed)} test case(s) since the cache was built; LocAcc, "
         f"IoU, pointing game and relevance recomputed from the stored maps ({len(updates)} explanation(s))")


def rederive_suspects(writer: CacheWriter, jobs: list) -> None:
    """Suspects from the stored metrics with today's rules, so a change of threshold needs no recomputation."""
    from gradfaith_tui.metrics.shortcuts import RULE_METRICS, suspect_reasons

    for j in jobs:
        values = writer.metric_values(j.expl_id, RULE_METRICS)
        rows = [(idx, *s) for idx, v in sorted(values.items())
                for s in suspect_reasons({k: (float("nan") if x is None else x) for k, x in v.items()})]
        writer.replace_suspects(j.expl_id, j.ckpt.model_id, rows)


def write_consist(writer: CacheWriter, jobs: list, size: int, tau: float, target: str, method: str) -> None:
    """Consist per case and architecture name, stored on every seed's explanation of that name; with the
    predicted class as target, over the seeds whose map explains the reference seed's class (eq. 6's c)."""
    from gradfaith_tui.cam.methods import upsample
    from gradfaith_tui.config import CLASS_AGNOSTIC_METHODS
    from gradfaith_tui.store.keys import CONSIST_RULE
    from gradfaith_tui.metrics.consistency import consist

    groups: dict[str, list] = {}
    for j in jobs:
        groups.setdefault(j.card["name"], []).append(j)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda j: not j.is_ref)  # reference first
        maps = [writer.read_maps(j.expl_id) for j in members]
        idx = np.flatnonzero(np.all([~np.isnan(m).any(axis=(1, 2)) for m in maps], axis=0))
        targets = None
        if target == "pred" and method not in CLASS_AGNOSTIC_METHODS:  # "true": every seed explains the label, one class
            targets = []
            for j in members:
                pred = np.full(len(maps[0]), -1, np.int64)
                rows = writer.con.execute("SELECT idx, pred FROM predictions WHERE model_id=?", (j.ckpt.model_id,)).fetchall()
                if rows:
                    pred[[r[0] for r in rows]] = [r[1] for r in rows]
                targets.append(pred[idx])
        if len(idx):
            values = consist([upsample(m[idx], size).numpy() for m in maps], tau, ref=0, targets_by_seed=targets)
            for j in members:
                writer.set_metrics(j.expl_id, idx, {"consist": values})
        with writer.con:  # the rule these explanations' Consist follows (demo's freshness check and the report read it)
            writer.con.executemany("UPDATE explanations SET settings = json_set(COALESCE(NULLIF(settings, ''), '{}'), "
                                   "'$.consist_rule', ?) WHERE expl_id = ?", [(CONSIST_RULE, j.expl_id) for j in members])
