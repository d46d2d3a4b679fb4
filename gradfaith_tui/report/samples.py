"""Which cases Figs. 2 and 3 show: chosen by a stated rule, never by hand, so the same cache gives the same rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.store.reader import CacheReader

WORST_PER_CLASS = 2
RANDOM_CASES = 5
RANDOM_SEED = 0


@dataclass(frozen=True)
class Sample:
    rule: str
    idxs: list[int]


def _cases(reader: CacheReader) -> tuple[np.ndarray, list[str]]:
    rows = reader.con.execute("SELECT idx, label, case_id FROM cases ORDER BY idx").fetchall()
    labels = np.array([-1 if r["label"] is None else r["label"] for r in rows])
    return labels, [r["case_id"] for r in rows]


def worst_faith(reader: CacheReader, arrays: dict[str, dict[str, np.ndarray]], k: int = WORST_PER_CLASS) -> Sample:
    """Per true class, the k cases whose lowest Faith over the shown models is lowest (ties by case id)."""
    rule = (f"per true class, the {k} cases with the lowest Faith of any shown model (ties broken by case id)")
    faith = [m["faith"] for m in arrays.values() if "faith" in m]
    if not faith:
        return Sample(rule + "; this cache has no Faith values", [])
    with np.errstate(all="ignore"):
        stack = np.vstack(faith)
        worst = np.where(np.isfinite(stack).any(0), np.nanmin(np.where(np.isfinite(stack), stack, np.inf), 0), np.nan)
    labels, ids = _cases(reader)
    order = sorted((i for i in range(len(ids)) if np.isfinite(worst[i])), key=lambda i: (worst[i], ids[i]))
    chosen = []
    for c in range(len(CLASS_NAMES)):
        chosen += [i for i in order if labels[i] == c][:k]
    return Sample(rule, chosen)


def random_cases(reader: CacheReader, exclude: list[int], k: int = RANDOM_CASES, seed: int = RANDOM_SEED) -> Sample:
    rule = (f"{k} cases drawn uniformly without replacement (numpy default_rng seed {seed}) from the test cases "
            "not shown in Fig. 2, listed by case id")
    _, ids = _cases(reader)
    pool = np.array(sorted(set(range(len(ids))) - set(exclude)), dtype=np.int64)
    if len(pool) == 0:
        return Sample(rule, [])
    picked = np.random.default_rng(seed).choice(pool, size=min(k, len(pool)), replace=False)
    return Sample(rule, sorted(picked.tolist(), key=lambda i: ids[i]))
