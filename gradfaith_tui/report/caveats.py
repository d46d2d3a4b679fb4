"""The data's limits that bound what the report may claim: one sentence each, only those that apply.

A reader of Table I and the faithfulness table on IQ-OTH/NCCD should learn, before the numbers, that it has
no lesion masks, no patient ids and byte-identical files under different classes. Built from the cache alone
(its cases table and stored config), so the Markdown, HTML and terminal reports say the same. Plain text:
each renderer escapes it for its own format.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from gradfaith_tui.config import CLASS_AGNOSTIC_METHODS, CLASS_NAMES, ROLLOUT_METHODS
from gradfaith_tui.data.duplicates import pair_text
from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.report.words import and_list
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.keys import CONSIST_RULE
from gradfaith_tui.store.leakage import trained_elsewhere
from gradfaith_tui.store.schema import MASKS_NAME

# The metrics that need a lesion mask: absent (NULL), never zero, on a case without one.
MASK_METRICS = ("locacc", "iou", "pointing_game", "relevance_mass", "relevance_rank")
LESION_CLASSES = CLASS_NAMES[1:]  # Normal slices have no lesion, so no mask is expected there
DATA_CHECK = "`gradfaith-tui data check DATA`"


def _count(con: sqlite3.Connection, where: str) -> int:
    return int(con.execute(f"SELECT COUNT(*) FROM cases WHERE {where}").fetchone()[0])


def phantoms(con: sqlite3.Connection, n: int) -> list[str]:
    """Shortcut truth exists only for generated phantoms: everything else in the report is about them."""
    known = _count(con, "shortcut IS NOT NULL")
    if not known:
        return []
    marked = _count(con, "shortcut = 1")
    where = [CLASS_NAMES[k] for (k,) in con.execute("SELECT DISTINCT label FROM cases WHERE shortcut = 1 "
                                                    "AND label IS NOT NULL ORDER BY label")]
    of = f", all {where[0]}" if len(where) == 1 else (f", {and_list(where)}" if where else "")
    what = f"with a planted marker (on {marked} of {n} test slices{of})" if marked else "(no marker planted)"
    return [f"The data are synthetic phantoms {what}: the findings are about the method, not about lung CT."]


def masks(con: sqlite3.Connection, n: int) -> list[str]:
    """Localisation needs a mask; a Normal slice lacks one by nature, a Benign or Malignant one by the data."""
    with_mask = _count(con, "has_mask = 1")
    lesion = _count(con, "label != 0")
    lesion_masked = _count(con, "label != 0 AND has_mask = 1")
    names = ", ".join(METRICS[m].label for m in MASK_METRICS)
    if not with_mask:
        return [f"No test case has a lesion mask: the localisation metrics ({names}) are absent for all {n} "
                "cases, not zero."]
    if lesion_masked < lesion:
        return [f"{with_mask} of {n} test cases have a lesion mask ({lesion_masked} of the {lesion} "
                f"{' or '.join(LESION_CLASSES)} ones); localisation metrics cover only those."]
    return []


def test_classes(con: sqlite3.Connection) -> list[str]:
    """The classes the test split holds, in class order."""
    present = {r[0] for r in con.execute("SELECT DISTINCT label FROM cases WHERE label IS NOT NULL")}
    return [name for k, name in enumerate(CLASS_NAMES) if k in present]


def macro_over(con: sqlite3.Connection) -> str:
    """What Table I's macro averages are over, in words: the classes the test split holds."""
    present = test_classes(con)
    if len(present) == len(CLASS_NAMES):
        return "the three classes"
    return f"the {len(present)} class{'es' * (len(present) != 1)} the test split holds ({', '.join(present)})"


def classes(con: sqlite3.Connection, n: int) -> list[str]:
    """A class with no test case: Table I averages over the others, and the audit says nothing of it."""
    present = test_classes(con)
    missing = [c for c in CLASS_NAMES if c not in present]
    if not missing:
        return []
    return [f"The test split has no {' or '.join(missing)} case: Table I averages over {macro_over(con)} only, and "
            f"nothing here is about {' or '.join(missing)} slices ({DATA_CHECK} shows the classes per split)."]


def patients(con: sqlite3.Connection, n: int) -> list[str]:
    """Without patient ids the split cannot keep a patient's slices together."""
    if _count(con, "patient IS NOT NULL AND TRIM(patient) != ''"):
        return []
    return [f"None of the {n} test cases has a patient id, so the split is by slice: slices of one patient may sit "
            f"in both train and test, and Table I may be optimistic ({DATA_CHECK} lists near-duplicate pairs across "
            "splits)."]


def _groups(k: int, one: str, many: str) -> str:
    return f"1 group of identical files {one}" if k == 1 else f"{k} groups of identical files {many}"


def identical(config: dict) -> list[str]:
    """From precompute's "identical_files" (data.prepared.identical_summary); older caches lack it: say nothing."""
    found = config.get("identical_files")
    if not isinstance(found, dict):
        return []
    out = []
    conflicts, examples = found.get("label_conflicts") or 0, found.get("conflict_examples") or []
    if conflicts:
        eg = f", e.g. {pair_text(examples[0])}" if examples else ""
        out.append(f"{_groups(conflicts, 'carries', 'carry')} different labels{eg}: a model cannot get both right.")
    across = found.get("across_splits") or 0
    if across:
        out.append(f"{_groups(across, 'spans', 'span')} more than one of train, validation and test: a test slice "
                   "may have a copy the model trained on, so test scores are inflated.")
    return out


def incomplete(reader: CacheReader) -> list[str]:
    """A precompute stopped early (or still running): some maps are missing, so the numbers are of a part (with
    each model's count, the n every mean below stands on); or the maps are whole but the stages after them
    (Table I, Consist, the sanity check) are not there yet."""
    done, expected = reader.completeness()
    rerun = "rerun `gradfaith-tui precompute` to finish it (it computes only what is missing)"
    if done < expected:
        per = [f"{c.model.name} {n:,}/{reader.n_cases:,}" for c, n in _maps_done(reader)]
        return [f"The cache is incomplete: {done:,} of {expected:,} maps (cases x shown models) are computed "
                f"({', '.join(per)} cases), so the numbers below describe part of the test set; "
                f"{rerun}."]
    later = _later_stages_missing(reader)
    if not later:
        return []
    return [f"The cache is incomplete: its maps are whole, but precompute stopped before {and_list(later)}; {rerun}."]


def _maps_done(reader: CacheReader) -> list[tuple]:
    return [(c, int(reader.con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id=? AND name='faith'",
                                       (c.expl_id,)).fetchone()[0])) for c in reader.columns if c.expl_id is not None]


def _later_stages_missing(reader: CacheReader) -> list[str]:
    """What precompute writes once every map is in, missing for a shown model (pipeline.precompute's order)."""
    con, shown = reader.con, [c for c in reader.columns if c.expl_id is not None]
    evaluated = {m for (m,) in con.execute("SELECT model_id FROM evaluation")}
    seeds = {}
    for m in reader.models:
        seeds[m.name] = seeds.get(m.name, 0) + 1
    consist = {e for (e,) in con.execute("SELECT DISTINCT expl_id FROM metrics WHERE name='consist'")}
    checked = {m for (m,) in con.execute("SELECT DISTINCT model_id FROM sanity WHERE method=?", (reader.method,))}
    wanted = (reader.config.get("cam") or {}).get("sanity_cases", 0)  # the last run's --sanity-cases
    missing = [("Table I", [c.model.name for c in shown if c.model.model_id not in evaluated]),
               ("Consist", [c.model.name for c in shown if seeds[c.model.name] > 1 and c.expl_id not in consist]),
               ("the sanity check", [c.model.name for c in shown if wanted and c.model.model_id not in checked])]
    return [f"{what} of {_listed(names)}" for what, names in missing if names]


def _vit(m) -> bool:
    """A ViT-style model (what rollout needs), from its names: the report reads no checkpoint."""
    return any(k in f"{m.arch} {m.family}".lower() for k in ("vit", "deit"))


def unexplained(reader: CacheReader) -> list[str]:
    """Models the cache lists with no maps by this method: shown as empty columns, their rows absent; the
    precompute that adds them, where the method applies (rollout follows a ViT's attention: a CNN has none)."""
    shown = [c.model for c in reader.columns if c.expl_id is None]
    if not shown:
        return []
    missing = [m.name for m in shown]
    one = len(missing) == 1
    text = (f"{_listed(missing)} {'has' if one else 'have'} no {reader.method} maps in this cache, so "
            f"{'its' if one else 'their'} columns are empty and no metric below is of {'it' if one else 'them'}")
    cnn = [m.name for m in shown if reader.method in ROLLOUT_METHODS and not _vit(m)]
    vit = [n for n in missing if n not in cnn]
    if cnn:
        text += (f"; {reader.method} follows a ViT's attention and does not apply to {_listed(cnn)}, "
                 f"{'a CNN' if len(cnn) == 1 else 'CNNs'}")
        if "gradcam" in reader.methods:
            text += f" (`gradfaith-tui report --method gradcam` shows {'its' if len(cnn) == 1 else 'their'} Grad-CAM maps)"
    if vit:
        text += (f"{'; for ' + _listed(vit) + ', ' if cnn else ': '}`gradfaith-tui precompute --method "
                 f"{reader.method} --models {','.join(vit)}` computes them")
    return [text + "."]


def leakage(con: sqlite3.Connection) -> list[str]:
    """Models precompute or evaluate used with --force although trained on other data or another split: their
    test cases may be ones they trained on, which nothing else in the report would show."""
    gaps = trained_elsewhere(con)
    if not gaps:
        return []
    rows = [f"{model_id} was trained {gap}" for model_id, gap in gaps.items()]
    one = len(rows) == 1
    what = "another split" if all("another split" in g for g in gaps.values()) else "other data or another split"
    return [f"Trained on {what}: {'; '.join(rows)}, and {'was' if one else 'were'} used anyway (--force), so "
            f"{'its' if one else 'their'} "
            f"test metrics may include training cases; retrain {'it' if one else 'them'} on this split (`gradfaith-tui "
            f"train`), then `precompute`."]


def unfinished(con: sqlite3.Connection) -> list[str]:
    """Checkpoints whose training was stopped before its last epoch (precompute and evaluate warned; the report
    is what gets shared): their numbers are of an unfinished model. Imported ones record no epochs."""
    rows = []
    for model_id, card in con.execute("SELECT model_id, card FROM models ORDER BY model_id"):
        card = json.loads(card or "{}")
        if card.get("epochs", 0) > card.get("epochs_done", 0):
            rows.append(f"{model_id} ({card.get('epochs_done', 0)} of {card['epochs']} epochs)")
    if not rows:
        return []
    return [f"Unfinished training: {_listed(rows)} {'was' if len(rows) == 1 else 'were'} stopped before the last "
            f"epoch, so {'its' if len(rows) == 1 else 'their'} numbers are those of an unfinished model; rerun "
            f"`gradfaith-tui train` with the same options, then `precompute`, to finish."]


# Explanation settings that change the numbers: tau (LocAcc, IoU, Consist), the baseline and target (Faith and
# the counterfactuals), deletion/insertion's steps. The engine is left out: its maps agree (r >= 0.99, tested).
SETTINGS = ("tau", "baseline", "target", "deep_steps")
UNSTORED = {"deep_steps": 0}  # what an explanation stored before the setting existed was computed with


def _listed(ids: list[str], most: int = 4) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def settings(reader: CacheReader) -> list[str]:
    """Models explained with different settings (a later precompute of some with another --tau, say): the
    configuration block shows only the last run's, and the comparisons between those models are of unlike things."""
    groups: dict[tuple, list[str]] = {}
    for model_id, text in reader.con.execute("SELECT model_id, settings FROM explanations WHERE method=? "
                                             "ORDER BY model_id", (reader.method,)):
        stored = json.loads(text or "{}")
        groups.setdefault(tuple(stored.get(k, UNSTORED.get(k)) for k in SETTINGS), []).append(model_id)
    if len(groups) < 2:
        return []
    differ = [i for i, k in enumerate(SETTINGS) if len({key[i] for key in groups}) > 1]
    parts = ["; ".join(f"{SETTINGS[i]} {key[i]}" for i in differ) + f" for {_listed(ids)}"
             for key, ids in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    return [f"The models were explained with different settings ({' | '.join(parts)}): metrics and tests that "
            "compare them compare unlike settings, and the configuration below is only the last precompute's; "
            "rerun `gradfaith-tui precompute` with one setting for all of them."]


def consist_rule(reader: CacheReader) -> list[str]:
    """Consist stored by an older precompute, which also compared seeds whose maps explain different classes:
    only where that could differ (the predicted class as target, a method whose maps have a class)."""
    if reader.method in CLASS_AGNOSTIC_METHODS:
        return []
    old = []
    for c in reader.columns:
        stored = reader.settings(c.expl_id)
        if stored.get("consist_rule") == CONSIST_RULE or stored.get("target", "pred") != "pred":
            continue
        if reader.con.execute("SELECT 1 FROM metrics WHERE expl_id=? AND name='consist' LIMIT 1", (c.expl_id,)).fetchone():
            old.append(c.model.name)
    if not old:
        return []
    return [f"Consist of {_listed(old)} was computed by an older version, which also compared seeds whose maps explain "
            "different classes; rerun `gradfaith-tui precompute` on this cache to recompute Consist alone."]


def computed(reader: CacheReader) -> np.ndarray:
    """(n_cases,) bool: the cases some shown model has a map of (with its metrics, as precompute counts one)."""
    ids = [c.expl_id for c in reader.columns if c.expl_id is not None]
    out = np.zeros(reader.n_cases, bool)
    if ids:
        idx = [i for (i,) in reader.con.execute(f"SELECT DISTINCT idx FROM metrics WHERE name='faith' AND expl_id IN "
                                                f"({','.join('?' * len(ids))})", ids)]
        out[idx] = True
    return out


def resolution(reader: CacheReader) -> list[str]:
    """Coarse CAM grids: a cell larger than the typical lesion can point near it, never outline it; and inputs
    smaller than the paper's 224 px. Of the models with maps and the cases mapped: not of what was never computed."""
    grid = {r[0]: (r[1], r[2]) for r in reader.con.execute("SELECT expl_id, map_h, map_w FROM explanations")}
    mapped = {c.expl_id for c, n in _maps_done(reader) if n}
    # the shown columns: the reader's reference seeds (which the is_ref column alone may not give, per method)
    rows = sorted((c.model.name, c.model.img_size, *grid[c.expl_id]) for c in reader.columns
                  if c.expl_id in grid and c.expl_id in mapped)
    if not rows:
        return []
    out = []
    sizes = sorted({r[1] for r in rows})
    if max(sizes) < 224:
        out.append(f"The models see {and_list(sizes)} px inputs (the paper's see 224 px): they are small "
                   "stand-ins, and their numbers show how the audit works more than how the paper's models behave.")
    masks = np.load(reader.root / MASKS_NAME, mmap_mode="r")
    has = reader.has_mask() & computed(reader)
    if not has.any():
        return out
    side = masks.shape[-1]
    lesion = float(np.asarray(masks[np.flatnonzero(has)]).astype(bool).sum(axis=(1, 2)).mean()) / side ** 2  # share
    grids: dict[tuple[int, int, int], list[str]] = {}
    for name, size, h, w in rows:
        grids.setdefault((size, h, w), []).append(name)
    coarse = [(size, h, w, names) for (size, h, w), names in grids.items() if 1 / (h * w) > lesion]
    if coarse:
        out.append("The CAM grids are coarser than the lesions: " + "; ".join(
            f"{h}x{w} on {size} px for {', '.join(names)} (one cell {size * size / (h * w):.0f} px)"
            for size, h, w, names in coarse)
            + f", while the mean lesion covers {lesion:.2%} of the slice ({lesion * coarse[0][0] ** 2:.0f} px at "
            f"{coarse[0][0]} px): such a map can point near a lesion, not outline it, so LocAcc and IoU are bounded.")
    return out


def caveats(reader: CacheReader) -> list[str]:
    """The data's and the run's limits, for the Data caveats section; incomplete() and unfinished() go above the
    findings, as they bound every number."""
    n = reader.n_cases
    if not n:
        return []
    con = reader.con
    return (unexplained(reader) + settings(reader) + consist_rule(reader) + phantoms(con, n)
            + classes(con, n) + masks(con, n) + patients(con, n) + identical(reader.config))
