"""What the audit found, in a few sentences at the top of the report: the answer a reader looks for first,
each sentence with the number that bounds it (a near-chance model, the share of the slice a map lights up,
which models fail the randomisation check, what the planted marker showed).

Map statistics come from the stored maps themselves: the share of the slice a binarised map covers is what a
random region of that size would score on LocAcc, and the mean map value is how much of the slice Faith's
removal takes away, so neither number can be read alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradfaith_tui.report.target import consist_over, kind
from gradfaith_tui.report.words import and_list, count, num
from gradfaith_tui.store.reader import CacheReader

NEAR_CHANCE = 0.15  # accuracy within this of chance (one over the classes the test split holds) counts as near it


@dataclass(frozen=True)
class MapStats:
    model: str
    mean_value: float  # mean of the [0, 1] map over the slice: the share of the slice Faith's removal takes away
    area: float  # share of the slice the map binarised at tau covers, over cases with a lesion mask (NaN: none)


def map_stats(reader: CacheReader) -> list[MapStats]:
    """Per shown model, from its stored maps (each min-max normalised on its own, as the metrics used them)."""
    has_mask = reader.has_mask()
    out = []
    for c in reader.columns:
        maps = reader.map_array(c.expl_id) if c.expl_id is not None else None
        if maps is None:
            continue
        done = ~np.isnan(maps).all(axis=(1, 2))
        if not done.any():
            continue
        tau = float(reader.settings(c.expl_id).get("tau", 0.5))
        masked = np.flatnonzero(done & has_mask)
        # binarised as LocAcc binarises it: upsampled to the model's input first (bilinear, half-pixel centres)
        area = (float(np.mean([(_upsampled(maps[i], c.model.img_size) >= tau).mean() for i in masked]))
                if len(masked) else float("nan"))
        out.append(MapStats(c.model.name, float(np.nanmean(maps[done])), area))
    return out


def _upsampled(m: np.ndarray, size: int) -> np.ndarray:
    """One map at the input size, as the metrics saw it (cam.methods.upsample, without torch: PIL's bilinear)."""
    from PIL import Image

    if m.shape == (size, size):
        return m
    return np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def _no_consist(r, model: str) -> str:
    if kind(r.method, r.targets.get(model, "pred")) == "pred":
        return "its seeds predict alike on no case, and Consist compares maps of one class"
    return "no case has a value"


def _mean(stats, metric: str, model: str) -> float | None:
    s = next((s for s in stats if s.metric == metric and s.model == model), None)
    return None if s is None else s.mean


# What a near-chance model's maps are of, by the class they explain (report.target.kind)
_WRONG = {"pred": "mostly explain wrong predictions", "true": "explain the true class where the model mostly predicts "
          "another", "none": "(of no class) come from a classifier that is mostly wrong"}


def findings(r, maps: list[MapStats], n_test_classes: int) -> list[str]:
    """r: the Report being built (its tables are done); maps: map_stats(); n_test_classes: for chance accuracy."""
    out = []
    chance = 1 / max(1, n_test_classes)
    refs = {c["model_id"]: c["name"] for c in r.columns}
    acc = {refs[s["model"]]: s["accuracy"] for s in r.per_checkpoint if s["model"] in refs and s["accuracy"] is not None}
    near = [(m, a) for m, a in acc.items() if a < chance + NEAR_CHANCE]
    if near:
        said = {kind(r.method, r.targets.get(m, "pred")) for m, _ in near}
        wrong = _WRONG[said.pop()] if len(said) == 1 else "come from mostly wrong predictions"
        out.append(f"{and_list(m for m, _ in near)} classif{'ies' if len(near) == 1 else 'y'} near or below chance "
                   f"(accuracy {', '.join(f'{a:.2f}' for _, a in near)}; chance {chance:.2f}): "
                   f"{'its' if len(near) == 1 else 'their'} maps {wrong}, so "
                   f"{'its' if len(near) == 1 else 'their'} Faith, LocAcc and Consist say little about the architecture.")
    faith = [(m.model, _mean(r.metric_stats, "faith", m.model), m.mean_value) for m in maps]
    faith = [(m, f, v) for m, f, v in faith if f is not None]
    if faith:
        best = max(faith, key=lambda t: t[1])
        text = ("Faith (the drop in the explained class's probability when the map's region is removed): "
                + ", ".join(f"{m} {num(f, 2)}" for m, f, _ in faith) + f"; highest {best[0]}. Each map is scaled to "
                "[0, 1] on its own, so a map that lights up more of the slice removes more: the maps' mean values "
                "are " + ", ".join(f"{m} {v:.2f}" for m, _, v in faith) + ".")
        control = [(m, f, _mean(r.metric_stats, "faith_shuffled", m)) for m, f, _ in faith]
        control = [(m, f, c) for m, f, c in control if c is not None]
        if control:  # --deep: the same maps with their cells shuffled, the same area removed
            text += (" Against the same maps with their cells shuffled (the same area removed): "
                     + ", ".join(f"{m} {num(f - c, 2, sign=True)}" for m, f, c in control) + "; a model near or below zero shows little "
                     "more than its maps' area.")
        else:
            text += " Compare Faith only with that in view (`precompute --deep` adds a shuffled-map control)."
        out.append(text)
    loc = [(m.model, _mean(r.metric_stats, "locacc", m.model), m.area) for m in maps if m.area == m.area]
    loc = [(m, a, area) for m, a, area in loc if a is not None]
    if loc:
        out.append("LocAcc (the share of the lesion the binarised map covers): " + ", ".join(
            f"{m} {a:.2f} with maps covering {area:.0%} of the slice" for m, a, area in loc)
            + ". A region of that size placed at random would cover the same share of the lesion, so LocAcc well "
            "above the map's area is what shows localisation; IoU and relevance mass penalise a map that lights up "
            "everything.")
    # a stored Consist with no value (n = 0: seeds that never predict alike) is said, not left out
    consist = [(s.model, s.mean) for s in r.metric_stats
               if s.metric == "consist" and s.stored and s.model in {m.model for m in maps}]
    if consist:
        over = {m: consist_over(r.method, r.targets.get(m, "pred")) for m, _ in consist}
        one = len(set(over.values())) == 1  # else each model's own rule beside its value
        out.append("Consist (IoU of each seed's binarised map with the reference seed's"
                   + (f", {next(iter(over.values()))}): " if one else "): ")
                   + ", ".join((f"{m} {v:.2f}" if v is not None else f"{m} none ({_no_consist(r, m)})")
                               + ("" if one else f" ({over[m]})") for m, v in consist) + ".")
    single = [m for m, k in r.seeds.items() if k == 1]
    if single:  # else Consist would vanish from the report unexplained
        out.append(f"Consist (agreement of maps across training seeds) needs two seeds of a model; {and_list(single)} "
                   f"{'has' if len(single) == 1 else 'have'} one in this cache: `gradfaith-tui train --seeds 0,1`, "
                   "then `precompute`, adds it.")
    if r.sanity.results:
        failed = [s.model_id for s in r.sanity.results if not s.passed]
        text = ("Sanity check (maps of progressively randomised weights): "
                + (f"{and_list(failed)} fail{'s' if len(failed) == 1 else ''}: {'its' if len(failed) == 1 else 'their'} "
                   "maps barely change when the weights are randomised, so they reflect the architecture more "
                   "than what the model learned." if failed else
                   "every model passes." if not r.sanity.unchecked else
                   f"{and_list(s.model_id for s in r.sanity.results)} pass{'es' * (len(r.sanity.results) == 1)}."))
        if r.sanity.unchecked:  # a model never checked must not read as passed
            one = len(r.sanity.unchecked) == 1
            text += (f" {and_list(r.sanity.unchecked)} {'was' if one else 'were'} not checked (no sanity check of "
                     f"{'its' if one else 'their'} maps is stored; precompute runs it unless `--sanity-cases 0`).")
        out.append(text)
    p = r.planted
    if p.computed and p.rows:
        caught = sum(row.caught or 0 for row in p.rows)
        by_rule = ", ".join(f"{s.rule} {s.caught}" for s in p.rules)
        # counted per model and marked slice: one slice that two models relied on counts twice
        out.append(f"Planted marker: across the shown models, the prediction changed when the marker was painted out "
                   f"in {count(p.relied, 'model-slice pair')} (that model relied on the marker on that slice); the "
                   f"suspect rules flagged {caught} of them" + (f" (by rule: {by_rule})" if by_rule else "") + ".")
    return out
