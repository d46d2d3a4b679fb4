"""The planted-shortcut check (phantoms): the marker's removal is ground truth that real data lacks.

Per model: on how many marked cases painting the marker out changed the prediction (the model relied on
it), how much heat the map put on the marker there (a faithful map shows what the model used), and how
the documented suspect rules fared against that truth. Torch- and scipy-free: the report and the
explorer's models screen both read it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from gradfaith_tui.store.files import table_names
from gradfaith_tui.store.records import Column

NAMES = ("shortcut_flip", "shortcut_drop", "shortcut_heat", "shortcut_area")


@dataclass
class PlantedRow:
    model_id: str
    marked: int  # test cases carrying the marker
    relied: int  # of them, cases whose prediction changed when it was painted out
    mean_drop: float  # target-probability drop, mean over marked cases
    heat_relied: float  # median share of the map's heat on the marker where the model relied on it (NaN: none)
    heat_other: float  # the same where it did not
    caught: int | None  # relied cases that a suspect rule flagged (None: the cache has no suspects)
    flagged_unmarked: int | None  # unmarked cases that a suspect rule flagged
    unmarked: int


@dataclass
class RuleScore:
    rule: str
    caught: int  # relied-on cases (summed over the shown models) that this rule flagged
    flagged_unmarked: int  # unmarked cases it flagged


@dataclass
class Planted:
    computed: bool = False  # the cache holds the marker metrics (phantoms with a planted marker)
    area: float = float("nan")  # the marker's mean share of the slice: what an evenly spread map puts on it
    rows: list[PlantedRow] = field(default_factory=list)
    rules: list[RuleScore] = field(default_factory=list)  # every suspect rule scored against the truth

    @property
    def relied(self) -> int:
        return sum(r.relied for r in self.rows)

    @property
    def unmarked(self) -> int:
        return sum(r.unmarked for r in self.rows)


def share_text(v: float) -> str:
    """A share as a percentage, "–" where there is none (NaN): for the report and the models screen alike."""
    return "–" if v != v else f"{v:.1%}"  # one decimal: a 1.7% share beside a 1.1% marker must not read 2% vs 1%


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def planted_check(con: sqlite3.Connection, columns: list[Column],
                  rule_order: list[str] | tuple[str, ...] = ()) -> Planted:
    """columns: the shown models (reference seeds); rule_order: the documented rules, listed first and
    scored even when they flagged nothing."""
    marked_cases = {i for (i,) in con.execute("SELECT idx FROM cases WHERE shortcut=1")}
    res = Planted()
    has_suspects = "suspects" in table_names(con)  # caches from before the engine stored them have none
    flagged: dict[int, set[int]] = {}
    by_rule: dict[tuple[int, str], set[int]] = {}
    # the shown maps' own suspects: another method's or seed's maps are not these
    for expl_id, idx, rule in con.execute("SELECT expl_id, idx, rule FROM suspects") if has_suspects else ():
        flagged.setdefault(expl_id, set()).add(idx)
        by_rule.setdefault((expl_id, rule), set()).add(idx)
    rank = {name: i for i, name in enumerate(rule_order)}
    rules = sorted({r for _, r in by_rule} | set(rule_order), key=lambda r: (rank.get(r, len(rank)), r))
    scores = {r: RuleScore(r, 0, 0) for r in rules}
    areas = []
    for col in columns:
        by: dict[int, dict[str, float]] = {}
        rows = con.execute(f"SELECT idx, name, value FROM metrics WHERE expl_id=? AND name IN ({','.join('?' * len(NAMES))}) "
                           "AND value IS NOT NULL", (col.expl_id, *NAMES))
        for idx, name, value in rows:
            by.setdefault(idx, {})[name] = value
        if not by:
            continue
        res.computed = True
        areas += [v["shortcut_area"] for v in by.values() if "shortcut_area" in v]
        relied = [i for i, v in by.items() if v.get("shortcut_flip") == 1.0]
        mine = flagged.get(col.expl_id, set())
        for r in rules:
            hit = by_rule.get((col.expl_id, r), set())
            scores[r].caught += len(set(relied) & hit)
            scores[r].flagged_unmarked += len(hit - marked_cases)
        # of the cases this map explains: a precompute stopped early has not looked at the others
        explained = {i for (i,) in con.execute("SELECT idx FROM metrics WHERE expl_id=? AND name='faith'", (col.expl_id,))}
        unmarked = len(explained - marked_cases)
        res.rows.append(PlantedRow(
            col.model.model_id, len(by), len(relied), float(np.mean([v.get("shortcut_drop", np.nan) for v in by.values()])),
            _median([by[i]["shortcut_heat"] for i in relied if "shortcut_heat" in by[i]]),
            _median([v["shortcut_heat"] for i, v in by.items() if i not in relied and "shortcut_heat" in v]),
            len(set(relied) & mine) if has_suspects else None, len(mine - marked_cases) if has_suspects else None,
            unmarked))
    res.area = float(np.mean(areas)) if areas else float("nan")
    res.rules = list(scores.values()) if res.computed else []
    return res
