"""Is a cache current for its data and checkpoints? Answered without importing torch,
so a second `make demo` opens the explorer in about a second instead of re-checking models."""

from __future__ import annotations

from pathlib import Path

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.models.registry import find_checkpoints
from gradfaith_tui.store.cache import CacheReader


def cache_is_current(data: Path, checkpoints: Path, cache: Path, names: list[str], seeds: list[int], epochs: int,
                     method: str = "gradcam") -> bool:
    try:
        fingerprint = discover(data).fingerprint()
        ckpts = find_checkpoints(checkpoints, names, seeds)
        reader = CacheReader(cache, method)
    except GradfaithError:
        return False
    try:
        if reader.meta.get("fingerprint") != fingerprint or len(ckpts) != len(names) * len(seeds):
            return False
        stored = {r["model_id"]: r["checkpoint_hash"] for r in reader.con.execute("SELECT model_id, checkpoint_hash FROM models")}
        for c in ckpts:
            if c.card.get("epochs_done", 0) < epochs or c.card.get("data_fingerprint") != fingerprint:
                return False
            if stored.get(c.model_id) != c.card.get("weights_sha1"):
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
        return all(done.get(c.model_id) == reader.n_cases for c in ckpts)
    finally:
        reader.close()
