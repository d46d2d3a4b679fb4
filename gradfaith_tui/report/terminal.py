"""A quick look at a report in the terminal: its main tables as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.report.build import Report
from gradfaith_tui.report.checks_md import NO_SUSPECTS, NOT_COMPUTED, other_methods
from gradfaith_tui.report.fit import NumbersTable
from gradfaith_tui.report.markdown import T1_HEADER, T1_KEYS, fmt
from gradfaith_tui.store.planted import share_text


def _table(title: str, header: list[str], rows: list[list[str]], left: int = 2) -> NumbersTable:
    t = NumbersTable(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < left else "right")
    for row in rows:
        t.add_row(*row)
    return t


def _better(metric: str) -> str:
    info = METRICS.get(metric)
    return "" if info is None else "↑" if info.higher_is_better else "↓"


def print_report(r: Report, console: Console | None = None) -> None:
    con = console or Console()
    for x in r.incomplete:
        con.print(f"[bold]Read this first.[/] {escape(x)}")
    if r.findings:
        con.print("What the audit found:")
        for f in r.findings:
            con.print(f"- {escape(f)}")
        if r.limits:  # headed as in report.md, not more findings
            con.print("Limits of these models and maps:")
        for x in r.limits:
            con.print(f"- {escape(x)}")
    if r.caveats:  # first, as in the report: they bound every number below
        con.print("Data caveats:")
        for c in r.caveats:
            con.print(f"- {escape(c)}")
    con.print(_table("Table I (this cache: macro over classes, test split)", T1_HEADER[:-1],
                     [[t["model"], t["stands_for"], *(fmt(t[k]) for k in T1_KEYS), str(t["n"] or "–"),
                       fmt(t["latency_ms"], 2)] for t in r.table1]))
    con.print(_table("The paper's published Table I (its own data; for reference only)",
                     ["Paper's model", "Family", *T1_HEADER[2:8], "Time (ms)"],
                     [[p["model"], p["family"], *(fmt(p[k], 2) for k in T1_KEYS), str(p["time_ms"])]
                      for p in r.paper_table1]))
    con.print(_table("Faithfulness (reference seeds; mean, SD, bootstrap 95% CI; ↑ higher is better, "
                     "↓ lower)", ["Metric", "Model", "n", "Mean", "SD", "95% CI"],
                     [[f"{s.label} {_better(s.metric)}", s.model, str(s.n), fmt(s.mean), fmt(s.sd),
                       "–" if s.ci is None else f"[{fmt(s.ci.lo)}, {fmt(s.ci.hi)}]"] for s in r.metric_stats]))
    con.print(escape(r.units))
    for note in r.class_notes:
        con.print(f"- {escape(note)}")
    if r.sanity.results:
        failed = sum(not s.passed for s in r.sanity.results)
        con.print(_table(f"Sanity check: {failed} of {len(r.sanity.results)} fail (FAIL where the last-stage mean "
                         f"Spearman is ≥ {r.sanity.threshold:.2f})",
                         ["Model", "Method", "Stages", "Last-stage Spearman", "Verdict"],
                         [[s.model_id, s.method, str(len(s.stages)), fmt(s.final), "PASS" if s.passed else "FAIL"]
                          for s in r.sanity.results]))
    else:
        con.print(f"sanity check: {NOT_COMPUTED.lower()} for {r.method}")
    for line in other_methods(r.sanity):
        con.print(escape(line.strip()))
    sus = r.suspects
    if sus.total:
        names = sus.rule_names
        con.print(_table("Shortcut suspects (cases per model and rule)", ["Model", *names, "Cases"],
                         [[m, *(str(c.get(n, 0)) for n in names), str(sus.cases.get(m, 0))]
                          for m, c in sus.counts.items()], left=1))
    else:
        con.print("shortcut suspects: " + (NO_SUSPECTS.lower() if sus.computed else NOT_COMPUTED.lower()))
    if r.planted.computed:
        con.print(_table(f"Planted shortcut: ground truth (the marker covers {r.planted.area:.1%} of a slice)",
                         ["Model", "Marked", "Relied on it", "Heat on marker (relied)", "Rules caught"],
                         [[p.model_id, str(p.marked), str(p.relied), share_text(p.heat_relied),
                           "–" if p.caught is None else f"{p.caught} of {p.relied}"] for p in r.planted.rows], left=1))
    con.print(f"flagged cases: {len(r.flags) or 'none'}" + (f"; notes without a flag: {len(r.notes)}" if r.notes else ""))
