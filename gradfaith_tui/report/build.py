"""Everything a report shows, collected from a cache into one plain structure that every renderer reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gradfaith_tui import __version__
from gradfaith_tui.config import CLASS_NAMES, PAPER_LABELS
from gradfaith_tui.report import cache_extras, checks, faithfulness, samples
from gradfaith_tui.report.caveats import (caveats, computed, incomplete, leakage, macro_over, resolution, test_classes,
                                          unfinished)
from gradfaith_tui.report.findings import findings, map_stats
from gradfaith_tui.report.paper import paper_rows
from gradfaith_tui.report.provenance import provenance
from gradfaith_tui.report.target import explaining, targets
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.planted import Planted, planted_check
from gradfaith_tui.store.exports import TABLE1_COLUMNS

FIGURES_DIR = "figures"


@dataclass
class Figure:
    key: str
    file: str  # relative to the report folder
    title: str
    caption: str
    idxs: list[int] = field(default_factory=list)  # the cases of a case grid
    written: bool = False  # set by figures.draw_all; a figure with nothing to draw is not written


@dataclass
class Report:
    title: str
    cache: str
    n_cases: int
    method: str
    version: str
    classes: tuple[str, ...]
    macro_over: str  # what Table I's macro averages are over, in words (report.caveats.macro_over)
    incomplete: list[str]  # what bounds every number: a precompute or a training stopped early, a model used with
    # --force on another split (caveats.incomplete, .unfinished, .leakage); said before anything else
    caveats: list[str]  # the data's limits that apply to this cache, one sentence each (report.caveats)
    findings: list[str]  # what the audit found, one sentence each (report.findings), filled once the rest is built
    units: str  # what n counts and what the CIs and tests resample, in words
    limits: list[str]  # of the models and their maps (input size, CAM grid against lesion size): caveats.resolution
    columns: list[dict]  # the shown models: name, model_id, family label, describe, expl_id
    seeds: dict[str, int]  # per shown model name: its seeds in the cache (Consist needs two)
    targets: dict[str, str]  # per shown model name with maps: "pred" or "true", its own explanation's --target
    table1: list[dict]  # per model_id: stands_for, the TABLE1_COLUMNS values, latency_ms, device, n
    table1_missing: list[str]  # model ids with no Table I in the cache
    confusion: dict[str, list[list[int]]]
    paper_table1: list[dict]
    per_checkpoint: list[dict]  # reader.summary(): every seed's accuracy and paper-metric means
    metric_stats: list[faithfulness.MetricStat]
    class_notes: list[str]  # where the explained class departs from the paper's (faithfulness.class_notes)
    paired: list[faithfulness.PairedRow]
    sanity: checks.Sanity
    suspects: checks.Suspects
    planted: Planted
    flags: list[dict]  # flagged cases (with their notes)
    notes: list[dict]  # notes written on cases without a flag: listed apart, not as flags
    figures: list[Figure]
    provenance: dict

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)


def _stands_for(family: str) -> str:
    return PAPER_LABELS.get(family, family)


def _table1(reader: CacheReader) -> tuple[list[dict], list[str], dict]:
    evals = reader.evaluation()
    fam = {m.model_id: m.family for m in reader.models}
    order = [m.model_id for m in reader.models] + sorted(set(evals) - set(fam))
    rows, missing, confusion = [], [], {}
    for model_id in order:
        body = evals.get(model_id)
        if body is None:
            missing.append(model_id)
            continue
        timing = body.get("timing") or {}
        rows.append({"model": model_id, "stands_for": _stands_for(fam.get(model_id, "?")),
                     **{k: body["macro"].get(k) for k in TABLE1_COLUMNS},
                     "latency_ms": timing.get("latency_ms"), "device": timing.get("device"), "n": body.get("n")})
        confusion[model_id] = body["confusion"]
    return rows, missing, confusion


def _figures(reader: CacheReader, arrays: dict[str, dict[str, np.ndarray]], flag_rows: list[dict]) -> list[Figure]:
    worst = samples.worst_faith(reader, arrays)
    rand = samples.random_cases(reader, worst.idxs)
    flagged = list(dict.fromkeys(f["idx"] for f in flag_rows))[:12]
    cols = ("the input (lesion mask outlined, where there is one) first, then each shown model's heatmap (its "
            f"reference seed's, {explaining(reader.method, targets(reader))}, scaled to [0, 1] on its own: colours "
            "compare places within a map, not across maps)")
    return [
        Figure("fig1", f"{FIGURES_DIR}/fig1_sens_spec_f1.png", "Fig. 1: Sensitivity, Specificity and F1 per model",
               f"Macro averages over {macro_over(reader.con)} on this cache's test split (Table I)."),
        Figure("fig2", f"{FIGURES_DIR}/fig2_worst_faith.png", "Fig. 2: the least faithful cases",
               f"Rows: {worst.rule}. Columns: {cols}. Under each map: the predicted class and Faith.", worst.idxs),
        Figure("fig3", f"{FIGURES_DIR}/fig3_random_cases.png", "Fig. 3: a random sample of cases",
               f"Rows: {rand.rule}. Columns: {cols}.", rand.idxs),
        Figure("fig4", f"{FIGURES_DIR}/fig4_confusion.png", "Fig. 4: confusion matrices",
               "Rows are true classes, columns predicted classes, one matrix per model and seed."),
        Figure("flagged", f"{FIGURES_DIR}/flagged_cases.png", "Flagged cases",
               f"Rows: the first {len(flagged)} flagged cases, oldest flag first. Columns: {cols}.", flagged),
    ]


def _units(reader: CacheReader, groups: np.ndarray) -> str:
    """n counts slices; the CIs and tests resample patients where the cases name them. Of the slices mapped:
    a precompute stopped early has not looked at the others."""
    done = computed(reader)
    if not done.any():
        return "n counts slices; no test slice has a map yet."
    named = [g for g in groups[done] if g.startswith("patient ")]
    if not named:
        return "n counts slices; with no patient ids the CIs and tests resample slices."
    masked = {g for g in groups[done & reader.has_mask()] if g.startswith("patient ")}
    slices = (f"the {reader.n_cases} test slices" if done.all() else
              f"the {int(done.sum())} test slices mapped so far (of {reader.n_cases})")
    return (f"n counts slices; {slices} come from {len(set(named))} patients ({len(masked)} "
            f"of them with lesion masks), and the CIs and paired tests resample those patients.")


def title(method: str) -> str:
    """The paper's question for Grad-CAM; the same audit of another method's maps says which."""
    return "Grad-CAM faithfulness audit" if method == "gradcam" else f"Heatmap faithfulness audit: {method}"


def build(reader: CacheReader) -> Report:
    arrays = faithfulness.metric_arrays(reader)
    groups = faithfulness.patients(reader)  # CIs and paired tests draw whole patients where cases name them
    table1, missing, confusion = _table1(reader)
    flag_rows, notes = cache_extras.notes_only(cache_extras.flags(reader))
    columns = [{"name": c.model.name, "model_id": c.model.model_id, "stands_for": _stands_for(c.model.family),
                "describe": c.model.describe, "expl_id": c.expl_id} for c in reader.columns]
    report = Report(
        title=title(reader.method), cache=str(reader.root), n_cases=reader.n_cases, method=reader.method,
        version=__version__, classes=CLASS_NAMES, macro_over=macro_over(reader.con),
        incomplete=incomplete(reader) + unfinished(reader.con) + leakage(reader.con) if reader.n_cases else [],
        caveats=caveats(reader),
        findings=[], units=_units(reader, groups), limits=resolution(reader), columns=columns, table1=table1,
        seeds={c.model.name: sum(m.name == c.model.name for m in reader.models) for c in reader.columns},
        targets=targets(reader),
        table1_missing=missing, confusion=confusion, paper_table1=paper_rows(), per_checkpoint=reader.summary(),
        metric_stats=faithfulness.summarise(arrays, groups), class_notes=faithfulness.class_notes(reader),
        paired=faithfulness.paired(arrays, groups),
        sanity=checks.sanity(reader), suspects=checks.suspects(reader),
        planted=planted_check(reader.con, reader.columns, checks.rule_names()), flags=flag_rows, notes=notes,
        figures=_figures(reader, arrays, flag_rows), provenance=provenance(reader))
    report.findings = findings(report, map_stats(reader), len(test_classes(reader.con)))
    return report
