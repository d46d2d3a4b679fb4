"""The faithfulness table: every metric stored for each shown model, with spread, CI and paired tests."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from gradfaith_tui.config import CLASS_AGNOSTIC_METHODS
from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.report.stats import Interval, PairedResult, bootstrap_ci, holm, paired_test
from gradfaith_tui.store.reader import CacheReader

DATA_PROPERTIES = ("shortcut_area",)  # stored per case, the same for every model: the data's, not a model's quality
# Kept as rows of n = 0 where stored without a value (seeds that never predict alike): no caveat explains its absence
SHOWN_EMPTY = ("consist",)


@dataclass(frozen=True)
class MetricStat:
    metric: str
    label: str
    model: str
    n: int
    mean: float | None
    sd: float | None
    median: float | None
    ci: Interval | None
    stored: bool = True  # False: a row of n = 0 for a model the metric is not stored for at all


@dataclass(frozen=True)
class PairedRow:
    metric: str
    label: str
    a: str
    b: str
    result: PairedResult
    p_holm: float | None


def metric_arrays(reader: CacheReader) -> dict[str, dict[str, np.ndarray]]:
    """model name -> metric name -> values over all cases (NaN where absent), for the shown (reference) models."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for col in reader.columns:
        arrays: dict[str, np.ndarray] = {}
        names = [r[0] for r in reader.con.execute("SELECT DISTINCT name FROM metrics WHERE expl_id=?", (col.expl_id,))]
        for name in names if col.expl_id is not None else []:
            rows = reader.con.execute("SELECT idx, value FROM metrics WHERE expl_id=? AND name=?",
                                      (col.expl_id, name)).fetchall()
            arr = np.full(reader.n_cases, np.nan)
            if rows:  # numpy turns the NULLs (no mask) into NaN
                arr[np.array([r[0] for r in rows])] = np.array([r[1] for r in rows], dtype=np.float64)
            arrays[name] = arr
        out[col.model.name] = arrays
    return out


def metric_order(arrays: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Catalogue order first (the paper's metrics lead), then any metric the catalogue does not know, by name."""
    present = {m for per_model in arrays.values() for m in per_model}
    known = [m for m in METRICS if m in present]
    return known + sorted(present - set(known))


def label(metric: str) -> str:
    info = METRICS.get(metric)
    return info.label if info else metric


def patients(reader: CacheReader) -> np.ndarray:
    """Each case's patient, for resampling whole patients; a case without one stands for itself."""
    rows = reader.con.execute("SELECT idx, patient FROM cases").fetchall()
    out = np.array([f"case {i}" for i in range(reader.n_cases)], dtype=object)
    for idx, patient in rows:
        if patient is not None and str(patient).strip():
            out[idx] = f"patient {patient}"
    return out


def summarise(arrays: dict[str, dict[str, np.ndarray]], groups: np.ndarray | None = None) -> list[MetricStat]:
    """groups: each case's patient (patients()), so the CIs resample patients, not slices. A metric no case
    has for any model (localisation without masks, the planted-marker checks on real data) gets no rows: a
    table of dashes says nothing the data caveats do not; but Consist stored without a value (SHOWN_EMPTY)
    keeps its rows of n = 0, which the findings explain."""
    rows = []
    for metric in metric_order(arrays):
        valued = any(np.isfinite(m[metric]).any() for m in arrays.values() if metric in m)
        if metric in DATA_PROPERTIES or not valued and metric not in SHOWN_EMPTY:
            continue
        for model, per_model in arrays.items():
            if not per_model:  # no maps by this method: the caveats say so; a row of n = 0 would not
                continue
            if not valued and metric not in per_model:  # only the models it is stored for
                continue
            x = per_model.get(metric)
            keep = np.isfinite(x) if x is not None else np.zeros(0, bool)
            g = groups[keep] if groups is not None and x is not None else None
            x = x[keep] if x is not None else np.empty(0)
            n = len(x)
            rows.append(MetricStat(metric, label(metric), model, n,
                                   float(x.mean()) if n else None, float(x.std(ddof=1)) if n > 1 else None,
                                   float(np.median(x)) if n else None, bootstrap_ci(x, groups=g),
                                   per_model.get(metric) is not None))
    return rows


def paired(arrays: dict[str, dict[str, np.ndarray]], groups: np.ndarray | None = None) -> list[PairedRow]:
    """Every pair of models on every metric, over the cases both have (tested over patients where groups
    gives each case's patient); Holm-adjusted within each metric."""
    rows = []
    for metric in metric_order(arrays):
        if metric in DATA_PROPERTIES:
            continue
        pairs = [(a, b) for a, b in combinations(arrays, 2) if metric in arrays[a] and metric in arrays[b]]
        results = [paired_test(arrays[a][metric], arrays[b][metric], groups) for a, b in pairs]
        kept = [(pair, r) for pair, r in zip(pairs, results) if r.n]  # no shared case (no masks, say): no test, no row
        adjusted = holm([r.p for _, r in kept])
        rows += [PairedRow(metric, label(metric), a, b, r, p) for ((a, b), r), p in zip(kept, adjusted)]
    return rows


def _listed(counts: dict[str, tuple[int, int]]) -> str:
    """name -> (cases that apply, cases the model predicted): a partly computed cache has not predicted them all."""
    whole = {n for _, n in counts.values()}
    if len(whole) == 1:
        return ", ".join(f"{name} {k}" for name, (k, _) in counts.items()) + f" of {whole.pop()} cases"
    return ", ".join(f"{name} {k} of {n} cases" for name, (k, n) in counts.items())


def class_notes(reader: CacheReader) -> list[str]:
    """Where the explained class departs from the paper's: with the predicted class as target (the default),
    Faith scores another class than eq. 5's true one on a model's wrong cases, and Consist (eq. 6, one class)
    leaves out a seed that predicts otherwise than the reference seed. One sentence each, only where it applies."""
    con = reader.con
    shown = [c for c in reader.columns if c.expl_id is not None]
    if {reader.settings(c.expl_id).get("target", "pred") for c in shown} != {"pred"}:
        return []
    predicted = {c.model.name: int(con.execute("SELECT COUNT(*) FROM predictions WHERE model_id=?",
                                               (c.model.model_id,)).fetchone()[0]) for c in shown}
    shown = [c for c in shown if predicted[c.model.name]]  # none predicted yet: nothing to say of it
    wrong = {c.model.name: (int(con.execute("SELECT COUNT(*) FROM predictions p JOIN cases c ON c.idx = p.idx "
                                            "WHERE p.model_id=? AND p.pred != c.label", (c.model.model_id,)).fetchone()[0]),
                            predicted[c.model.name]) for c in shown}
    out = []
    if any(k for k, _ in wrong.values()):
        out.append(f"Faith and the counterfactual flips score each model's predicted class (`--target pred`, the "
                   f"default), where the paper's eq. 5 scores the true class; the two differ on the cases a model gets "
                   f"wrong ({_listed(wrong)}). `precompute --target true` scores the true class.")
    differ = {}
    for c in shown:
        ref = c.model
        k = con.execute("SELECT COUNT(DISTINCT o.idx) FROM predictions o JOIN models m ON m.model_id = o.model_id "
                        "JOIN predictions r ON r.idx = o.idx AND r.model_id = ? "
                        "WHERE m.name = ? AND m.model_id != ? AND o.pred != r.pred",
                        (ref.model_id, ref.name, ref.model_id)).fetchone()[0]
        if k:
            differ[ref.name] = (int(k), predicted[ref.name])
    if differ and reader.method not in CLASS_AGNOSTIC_METHODS:  # else every seed's map is of no class
        out.append(f"Consist compares maps of one class (eq. 6): a seed that predicts another class than the reference "
                   f"seed is left out of that case's Consist, and a case where every other seed does so has none "
                   f"({_listed(differ)} have such a seed).")
    return out
