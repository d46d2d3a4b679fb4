"""The report as Markdown, rendered from the Report structure (the HTML file renders this same text)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.report.build import Figure, Report
from gradfaith_tui.report.checks_md import planted_section, sanity_section, suspects_section
from gradfaith_tui.report.paper import PAPER_TABLE1_SOURCE
from gradfaith_tui.report.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, PAIRED_TEST_NAME
from gradfaith_tui.report.tables import markdown_table
from gradfaith_tui.report.words import num
from gradfaith_tui.report.target import consist_cases

T1_KEYS = ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")
T1_HEADER = ["Model", "Stands for", "Sensitivity", "Specificity", "Precision", "Recall", "F1", "Accuracy", "n",
             "ms/image", "Device"]


def fmt(v, digits: int = 3) -> str:
    return "–" if v is None or not math.isfinite(v) else num(v, digits)


def fmt_p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def escape(text) -> str:
    """Text from the cache or the user inside Markdown: no links, images or HTML, no broken table cells, and no
    emphasis or code span out of a name or note (a model called a*b*c, a note with `)."""
    return _escaped(" ".join(str(text).split())) or "–"


def _escaped(text: str) -> str:
    # Brackets, bangs and angle brackets are what links, images and autolinks need; | would split a cell.
    return re.sub(r"([\\\[\]<>!|*_`])", r"\\\1", text)


def escape_prose(text) -> str:
    """The report's own sentences (findings, caveats): names in them escaped, their `commands` kept as code."""
    parts = re.split(r"(`[^`]+`)", " ".join(str(text).split()))
    return "".join(p if i % 2 else _escaped(p) for i, p in enumerate(parts)) or "–"


def code(text) -> str:
    """A code span of any text: a fence longer than any run of backticks in it (no backslash escapes there)."""
    text = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _figure(f: Figure, src: Callable[[Figure], str]) -> str:
    if not f.written:
        return f"*{f.title}: nothing to draw from this cache.*\n"
    return f"![{f.title}]({src(f)})\n\n*{f.title}.* {f.caption}\n"


def _findings(r: Report) -> list[str]:
    if not r.findings:
        return []
    out = ["## What the audit found\n", "\n".join(f"- {escape_prose(f)}" for f in r.findings) + "\n"]
    if r.limits:
        out.append("Limits of these models and maps: " + " ".join(escape_prose(x) for x in r.limits) + "\n")
    return out


def _caveats(r: Report) -> list[str]:
    """Before Table I: what these data cannot show bounds every number below. Omitted when nothing applies."""
    if not r.caveats:
        return []
    return ["## Data caveats\n", "Read the results below with these limits of the data in mind:\n",
            "\n".join(f"- {escape_prose(c)}" for c in r.caveats) + "\n"]


def _table1(r: Report, src) -> list[str]:
    rows = [[escape(t["model"]), escape(t["stands_for"]), *(fmt(t[k]) for k in T1_KEYS), str(t["n"] or "–"),
             fmt(t["latency_ms"], 2), escape(t["device"] or "–")] for t in r.table1]
    out = ["## Table I: classification on the test split\n",
           f"Macro averages over {r.macro_over} (one-vs-rest); inference time is the median latency of one image.\n",
           markdown_table(T1_HEADER, rows) + "\n" if rows else "*No Table I in this cache (run `gradfaith-tui evaluate` "
           "or `precompute`).*\n"]
    if r.table1_missing:
        out.append(f"No Table I stored for: {escape(', '.join(r.table1_missing))}.\n")
    paper = [[p["model"], p["family"], *(fmt(p[k], 2) for k in T1_KEYS), str(p["time_ms"])] for p in r.paper_table1]
    out += ["### For reference: the paper's published Table I\n",
            f"These are **the paper's values on its own data**, not results of this audit ({PAPER_TABLE1_SOURCE}). "
            "Compare a model above with the paper row its *Stands for* names only with that in mind.\n",
            markdown_table(["Paper's model", "Family", *T1_HEADER[2:8], "Time (ms)"], paper) + "\n",
            _figure(r.figure("fig1"), src)]
    return out


def _confusion(r: Report, src) -> list[str]:
    out = ["## Fig. 4: confusion matrices\n", _figure(r.figure("fig4"), src)]
    for model, cm in r.confusion.items():
        rows = [[name, *map(str, row)] for name, row in zip(r.classes, cm)]
        out.append(f"**{escape(model)}** (rows true, columns predicted)\n\n" + markdown_table(["", *r.classes], rows) + "\n")
    return out


def _faithfulness(r: Report) -> list[str]:
    out = ["## Faithfulness\n",
           f"Every metric stored for the shown models (reference seed of each), over the test cases where it exists. "
           f"95% CI: percentile bootstrap of the mean, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}, "
           "drawing whole patients where the cache knows each case's patient (a patient's slices are not independent), "
           "else cases "
           f"(marked *normal* where the sample is large enough that the normal approximation is used). {r.units}\n"]
    rows = [[escape(s.label), escape(s.model), str(s.n), fmt(s.mean), fmt(s.sd), fmt(s.median),
             "–" if s.ci is None else f"[{fmt(s.ci.lo)}, {fmt(s.ci.hi)}]" + (" normal" if s.ci.method == "normal" else "")]
            for s in r.metric_stats]
    out.append(markdown_table(["Metric", "Model", "n", "Mean", "SD", "Median", "95% CI"], rows) + "\n"
               if rows else "*No metrics in this cache yet.*\n")
    seen = list(dict.fromkeys(s.metric for s in r.metric_stats))
    defs = [f"- **{METRICS[m].label}** ({'higher' if METRICS[m].higher_is_better else 'lower'} is better): "
            f"{METRICS[m].meaning}" for m in seen if m in METRICS]
    defs += [f"- **{escape(m)}**: not in the metric catalogue." for m in seen if m not in METRICS]
    out.append("\n".join(defs) + "\n")
    if r.class_notes:
        out.append("\n".join(f"- {escape_prose(note)}" for note in r.class_notes) + "\n")
    out.append("### Paired tests between models\n")
    out.append(f"Test: {PAIRED_TEST_NAME}, on the cases both models have a value (on each patient's mean "
               "difference where the cache knows the patients, a patient's slices not being independent); p-values "
               "Holm-Bonferroni adjusted within each metric. Mean difference is the first model minus the second. "
               "A pair of models with no case in common on a metric (the mask metrics where no case has a mask) has "
               "no row; W and p are – where fewer than two cases (patients) differ between the two: nothing to test.\n")
    rows = [[escape(p.label), escape(p.a), escape(p.b), str(p.result.n), fmt(p.result.mean_diff), fmt(p.result.statistic, 1),
             fmt_p(p.result.p), fmt_p(p.p_holm)] for p in r.paired]
    out.append(markdown_table(["Metric", "Model A", "Model B", "Shared cases", "Mean A−B", "W", "p", "p (Holm)"], rows)
               + "\n" if rows else "*Fewer than two models with metrics: no paired tests.*\n")
    out.append("### Every checkpoint (all seeds)\n")
    out.append("Means over the cases where each metric exists (LocAcc: cases with a mask; Consist: one value per "
               f"case and architecture, stored on every seed, {consist_cases(r.method, r.targets)}). Rankings "
               "that differ between seeds are rankings the data cannot settle.\n")
    rows = [[escape(s["model"]), str(s["n"]), fmt(s["accuracy"]), fmt(s["locacc"]), fmt(s["faith"]), fmt(s["consist"])]
            for s in r.per_checkpoint]
    out.append(markdown_table(["Model", "Cases predicted", "Accuracy", "LocAcc", "Faith", "Consist"], rows) + "\n")
    return out


def _flags(r: Report, src) -> list[str]:
    out = ["## Flagged cases\n"]
    if not r.flags:
        out.append("None: no case is flagged in this cache.\n")
    else:
        rows = [[escape(f["case_id"]), f["label"], escape(f["category"]),
                 "–" if f.get("viewed") is None else escape(f["viewed"] or "all models"),
                 escape(f["note"]), escape(f["created"])] for f in r.flags]
        out += ["Map in view: the model, seed and CAM method whose map the flag was set on, in the zoom or with one "
                "model chosen in the table (older flags name the method only where it was not the one shown); "
                "*all models* where it was set on the table's worst-of-models view; – where the flag predates this "
                "record.\n",
                markdown_table(["Case", "True class", "Category", "Map in view", "Note", "Flagged"], rows) + "\n",
                _figure(r.figure("flagged"), src)]
    if r.notes:  # a note alone is a remark, not a flag
        rows = [[escape(f["case_id"]), f["label"], escape(f["note"]), escape(f["created"])] for f in r.notes]
        out += ["### Notes on cases without a flag\n",
                markdown_table(["Case", "True class", "Note", "Written"], rows) + "\n"]
    return out


def _provenance(r: Report) -> list[str]:
    p = r.provenance
    ident = [[k, escape(v)] for k, v in p["meta"].items()] + [["cache", escape(p["cache"])],
                                                              ["test cases", str(p["n_cases"])], ["method", p["method"]]]
    models = [[escape(m["model_id"]), escape(m["arch"]), escape(m["family"]), str(m["seed"]), "yes" if m["reference"] else "",
               str(m["img_size"]), escape(m["checkpoint"]), escape(m["layer"]), escape(m["map"]), escape(m["settings"]),
               escape(m["trained_with"])] for m in p["models"]]
    env = [[k, v] for k, v in p["environment"].items()]
    return ["## Provenance: enough to reproduce this audit\n",
            markdown_table(["Key", "Value"], ident) + "\n",
            markdown_table(["Model", "Architecture", "Family", "Seed", "Reference", "Input px", "Checkpoint",
                            "CAM layer", "Map", "CAM settings", "Trained with"], models) + "\n",
            "Report written with:\n\n" + markdown_table(["Package", "Version"], env) + "\n",
            "Configuration of the last precompute:\n\n```json\n" + json.dumps(p["config"], indent=2, sort_keys=True) + "\n```\n"]


def render(r: Report, image_src: Callable[[Figure], str] = lambda f: f.file) -> str:
    shown = ", ".join(f"{escape(c['name'])} ({escape(c['stands_for'])})" for c in r.columns)
    parts = [f"# {r.title}\n",
             f"Cache {code(r.cache)} · {r.n_cases} test cases · method {r.method} · gradfaith-tui {r.version}. "
             f"Models shown: {shown}.\n"]
    parts += [f"**Read this first.** {escape_prose(x)}\n" for x in r.incomplete]  # it bounds every number below
    parts += _findings(r) + _caveats(r) + _table1(r, image_src) + _confusion(r, image_src) + _faithfulness(r)
    parts += ["## Figs. 2 and 3: heatmaps of chosen cases\n", _figure(r.figure("fig2"), image_src),
              _figure(r.figure("fig3"), image_src)]
    parts += sanity_section(r.sanity) + suspects_section(r.suspects) + planted_section(r.planted)
    parts += _flags(r, image_src) + _provenance(r)
    return "\n".join(parts)


def write(r: Report, out: Path) -> Path:
    path = Path(out) / "report.md"
    path.write_text(render(r))
    return path
