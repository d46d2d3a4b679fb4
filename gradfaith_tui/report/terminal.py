"""A quick look at a report in the terminal: its main tables as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradfaith_tui.report.build import Report
from gradfaith_tui.report.markdown import T1_HEADER, T1_KEYS, fmt


def _table(title: str, header: list[str], rows: list[list[str]], left: int = 2) -> Table:
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < left else "right")
    for row in rows:
        t.add_row(*row)
    return t


def print_report(r: Report, console: Console | None = None) -> None:
    con = console or Console()
    con.print(_table("Table I (this cache: macro over classes, test split)", T1_HEADER[:-1],
                     [[t["model"], t["stands_for"], *(fmt(t[k]) for k in T1_KEYS), str(t["n"] or "–"),
                       fmt(t["latency_ms"], 2)] for t in r.table1]))
    con.print(_table("The paper's published Table I (its own data; for reference only)",
                     ["Paper's model", "Family", *T1_HEADER[2:8], "Time (ms)"],
                     [[p["model"], p["family"], *(fmt(p[k], 2) for k in T1_KEYS), str(p["time_ms"])]
                      for p in r.paper_table1]))
    con.print(_table("Faithfulness (reference seeds; mean, SD, bootstrap 95% CI)",
                     ["Metric", "Model", "n", "Mean", "SD", "95% CI"],
                     [[s.label, s.model, str(s.n), fmt(s.mean), fmt(s.sd),
                       "–" if s.ci is None else f"[{fmt(s.ci.lo)}, {fmt(s.ci.hi)}]"] for s in r.metric_stats]))
    for kind, res in r.optional.items():
        con.print(f"{kind}: " + ("not in this cache yet" if res.table is None else f"{res.total} rows in `{res.table}`"))
    con.print(f"flagged cases: {len(r.flags) or 'none'}")
