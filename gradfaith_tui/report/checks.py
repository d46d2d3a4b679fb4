"""The engine's checks as the report shows them: sanity-check verdicts per model and method, and shortcut suspects
counted per model and rule, with each rule's threshold in words and a few example cases."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.metrics.catalog import FAIL_RHO, METRICS
from gradfaith_tui.store.reader import CacheReader

EXAMPLES_PER_RULE = 2
# the suspects table's rows of one method's maps (the ? its name)
METHOD_SUSPECTS = "(SELECT s.* FROM suspects s JOIN explanations e ON e.expl_id = s.expl_id WHERE e.method = ?)"


@dataclass
class SanityStage:
    stage: int
    added: str  # what this stage re-initialised on top of the earlier stages
    randomised: str  # everything re-initialised so far, output first
    spearman: float
    n_cases: int


@dataclass
class SanityResult:
    model_id: str
    method: str
    stages: list[SanityStage]

    @property
    def final(self) -> float:
        return self.stages[-1].spearman

    @property
    def passed(self) -> bool:
        return self.final < FAIL_RHO


@dataclass
class Sanity:
    results: list[SanityResult] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # reference models without a check, when others have one
    threshold: float = FAIL_RHO
    other_methods: list[str] = field(default_factory=list)  # methods with checks stored too, reported by their --method


@dataclass
class RuleText:
    name: str
    metric: str
    threshold: str  # e.g. "Border heat ≥ 40%"
    words: str  # e.g. "at least 40% of heat in the image border band"


@dataclass
class Suspects:
    computed: bool  # False: the cache has no suspects table at all
    rules: list[RuleText] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # model_id -> rule -> rows
    cases: dict[str, int] = field(default_factory=dict)  # model_id -> cases with at least one suspect
    examples: list[dict] = field(default_factory=list)
    total: int = 0

    @property
    def rule_names(self) -> list[str]:
        """The documented rules first, then any other rule the cache holds."""
        known = [r.name for r in self.rules]
        return known + sorted({r for c in self.counts.values() for r in c} - set(known))


def sanity(reader: CacheReader) -> Sanity:
    """The checks of the report's method only: another method's verdict is not this method's maps' verdict."""
    if "sanity" not in reader.tables():
        return Sanity()
    rows = reader.con.execute("SELECT model_id, method, stage, randomised, spearman, n_cases FROM sanity "
                              "WHERE method = ? ORDER BY model_id, method, stage", (reader.method,)).fetchall()
    others = [m for (m,) in reader.con.execute("SELECT DISTINCT method FROM sanity WHERE method != ? ORDER BY method",
                                               (reader.method,))]
    order = {m.model_id: i for i, m in enumerate(reader.models)}
    by: dict[tuple[str, str], list[SanityStage]] = {}
    for model_id, method, stage, randomised, rho, n in rows:
        stages = by.setdefault((model_id, method), [])
        before = set(stages[-1].randomised.split(",")) if stages else set()
        added = ",".join(p for p in str(randomised).split(",") if p not in before)
        stages.append(SanityStage(int(stage), added, str(randomised), float(rho), int(n)))
    results = [SanityResult(m, meth, st) for (m, meth), st in
               sorted(by.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0]))]
    checked = {r.model_id for r in results}
    unchecked = [m.model_id for m in reader.models if m.is_ref and m.model_id not in checked] if results else []
    return Sanity(results, unchecked, other_methods=others)


def _pct_or_number(metric: str, v: float) -> str:
    return f"{v:.0%}" if metric.endswith("_heat") else f"{v:g}"


def rule_names() -> list[str]:
    """The documented suspect rules in their order (imported here: scipy)."""
    from gradfaith_tui.metrics.shortcuts import RULES

    return [r.name for r in RULES]


def rule_texts() -> list[RuleText]:
    """Every documented suspect rule with its threshold, from metrics/shortcuts.RULES (imported here: scipy)."""
    from gradfaith_tui.metrics.shortcuts import RULES

    out = []
    for r in RULES:
        label = METRICS[r.metric].label if r.metric in METRICS else r.metric
        threshold = f"{label} ≥ {_pct_or_number(r.metric, r.threshold)}"
        words = f"at least {r.reason.format(r.threshold)}" if "{" in r.reason else r.reason
        also = getattr(r, "also", None)
        if also:
            other = METRICS[also[0]].label if also[0] in METRICS else also[0]
            threshold += f" and {other} ≥ {_pct_or_number(also[0], also[1])}"
        out.append(RuleText(r.name, r.metric, threshold, words))
    return out


def suspects(reader: CacheReader) -> Suspects:
    """The suspects of the report's method's maps (every seed): another method's maps have their own."""
    if "suspects" not in reader.tables():
        return Suspects(False, rule_texts())
    con = reader.con
    res = Suspects(True, rule_texts())
    mine, m = METHOD_SUSPECTS, (reader.method,)
    for model_id, rule, n in con.execute(f"SELECT model_id, rule, COUNT(*) FROM {mine} GROUP BY 1, 2 ORDER BY 1, 2", m):
        res.counts.setdefault(model_id, {})[rule] = int(n)
    res.cases = {r[0]: int(r[1]) for r in con.execute(f"SELECT model_id, COUNT(DISTINCT idx) FROM {mine} GROUP BY 1", m)}
    res.total = int(con.execute(f"SELECT COUNT(*) FROM {mine}", m).fetchone()[0])
    order = {m.model_id: i for i, m in enumerate(reader.models)}
    res.counts = dict(sorted(res.counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    rows = con.execute(
        "SELECT s.idx, s.model_id, s.rule, s.value, s.reason, c.case_id, c.label FROM "
        f"(SELECT *, ROW_NUMBER() OVER (PARTITION BY rule ORDER BY value DESC, idx, model_id) AS k FROM {mine}) s "
        "LEFT JOIN cases c ON c.idx = s.idx WHERE s.k <= ? ORDER BY s.rule, s.k", (*m, EXAMPLES_PER_RULE)).fetchall()
    rank = {name: i for i, name in enumerate(res.rule_names)}
    res.examples = sorted(({"idx": r[0], "model_id": r[1], "rule": r[2], "value": r[3], "reason": r[4],
                            "case_id": r[5] or f"#{r[0]}", "label": CLASS_NAMES[r[6]] if r[6] is not None else "–"}
                           for r in rows), key=lambda e: rank.get(e["rule"], len(rank)))
    return res
