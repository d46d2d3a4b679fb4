"""Models screen: the paper's Table I and confusion matrices from the cached predictions, per-model
histograms of Faith, LocAcc, Consist and IoU (HIST_METRICS), and the sanity-check and suspect summaries (or a line saying there are none)."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from gradfaith_tui.metrics.catalog import FAIL_RHO, METRICS
from gradfaith_tui.models.table1 import confusion
from gradfaith_tui.models.table1 import table1 as table1_of  # NumPy only: no torch in the explorer
from gradfaith_tui.store.files import table_names
from gradfaith_tui.store.leakage import trained_elsewhere
from gradfaith_tui.store.planted import planted_check, share_text
from gradfaith_tui.tui.source import CaseSource

BARS = " ▁▂▃▄▅▆▇█"
HIST_METRICS = ("faith", "locacc", "consist", "iou")


def table1(labels: np.ndarray, preds: np.ndarray) -> dict:
    """Macro sensitivity, specificity, precision, F1 and accuracy (None where there is none), and the
    confusion matrix, of one model's cached predictions, as evaluate computes them."""
    ok = (labels >= 0) & (preds >= 0)
    cm = confusion(labels[ok], preds[ok])
    return {**table1_of(cm)["macro"], "confusion": cm, "n": int(ok.sum())}


def sparkline(counts: np.ndarray) -> str:
    top = max(1, int(counts.max()))
    return "".join(BARS[int(np.ceil(c / top * (len(BARS) - 1)))] for c in counts)


class ModelsScreen(Screen[None]):
    BINDINGS = [Binding("escape,q,M", "app.pop_screen", "Back")]

    def __init__(self, source: CaseSource):
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="models-scroll"):
            yield Static("Models: reading the cache…", id="models-body")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#models-scroll").focus()
        self.build()

    @work(thread=True, exclusive=True, group="models")
    def build(self) -> None:
        a = self.source.arrays
        cols = self.source.columns
        parts: list = [Text("Table I (macro, from the cached test predictions)", style="bold underline")]
        t1 = Table(box=None, padding=(0, 1), header_style="bold")
        for h in ("model", "n", "Sens", "Spec", "Prec", "F1", "Acc"):
            t1.add_column(h, justify="left" if h == "model" else "right", no_wrap=True)
        results = [table1(a.labels, a.preds[i]) for i in range(len(cols))]
        gaps = trained_elsewhere(a.con)  # models --force used although trained on another split or other data
        for i, (c, r) in enumerate(zip(cols, results)):
            t1.add_row(f"M{i + 1} {c.model.name}" + (" !" if c.model.model_id in gaps else ""), f"{r['n']:,}",
                       *("–" if r[k] is None else f"{r[k]:.3f}"
                         for k in ("sensitivity", "specificity", "precision", "f1", "accuracy")))
        parts += [t1] + [Text(f"! {self.source.model_label(m)}: trained {gap}; used with --force, so its test "
                              f"metrics may include training cases", style="bold red") for m, gap in gaps.items()]
        parts += [Text("")]
        parts.append(Text("Confusion matrices (rows: true N/B/M, columns: predicted)", style="bold underline"))
        cms = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        for i, c in enumerate(cols):
            cms.add_column(f"M{i + 1} {c.model.name}", no_wrap=True)
        width = max(len(f"{int(r['confusion'].max()):,}") for r in results)
        lines = ["\n".join(" ".join(f"{v:>{width},}" for v in row) for row in r["confusion"]) for r in results]
        cms.add_row(*lines)
        parts += [cms, Text("")]
        parts.append(Text("Distributions (10 bins over [0, 1], then the mean; <0: Faith below 0, not in the bins; n/a: cases without a value)", style="bold underline"))
        cells = {(i, m): self._hist_cell(a, m, i) for i in range(len(cols)) for m in HIST_METRICS}
        names = [f"M{i + 1} {c.model.name}" for i, c in enumerate(cols)]
        cell_w = max(len(s) for s in cells.values()) + 1
        per_table = max(1, (self.app.size.width - 2 - max(map(len, names))) // cell_w)  # narrow: fewer per table
        for k in range(0, len(HIST_METRICS), per_table):
            hist = Table(box=None, padding=(0, 1), header_style="bold")
            hist.add_column("model", no_wrap=True)
            for m in HIST_METRICS[k:k + per_table]:
                hist.add_column(f"{METRICS[m].label} ↑", no_wrap=True)
            for i, name in enumerate(names):
                hist.add_row(name, *(cells[(i, m)] for m in HIST_METRICS[k:k + per_table]))
            parts += [hist, Text("")]
        parts += self._suspects(a) + [Text("")] + self._planted(a, names) + self._sanity()
        self.app.call_from_thread(self._show, Group(*parts))

    def _show(self, body: Group) -> None:
        if self.is_attached:  # closed before its tables were ready: nothing to draw them on
            self.query_one("#models-body", Static).update(body)

    @staticmethod
    def _hist_cell(a, metric: str, model: int) -> str:
        v = a.metric(metric)[model]
        below = int((v < 0).sum())  # Faith < 0: the score rose without the map's region, the least faithful
        counts, _, missing = a.histogram(metric, model)
        counts[0] -= below  # the histogram clips them into its first bin: counted apart instead
        mean = f"{np.nanmean(v):5.2f}" if (~np.isnan(v)).any() else f"{'–':>5}"  # absent, not a number
        return (f"{sparkline(counts)} {mean}" + (f" {below:,} <0" if below else "")
                + (f" {missing:,} n/a" if missing else ""))

    def _suspects(self, a) -> list:
        head = Text("Suspects from the engine", style="bold underline")
        if not a.has_suspects or not a.suspects:
            what = "no suspect data in this cache" if not a.has_suspects else "no case crossed a suspect threshold"
            return [head, Text(what, style="dim")]
        counts: dict[tuple[str, str], int] = {}
        for items in a.suspects.values():
            for s in items:
                counts[(s.model_id, s.rule)] = counts.get((s.model_id, s.rule), 0) + 1
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for h in ("model", "rule", "cases"):
            t.add_column(h, no_wrap=True)
        place = {c.model.name: i for i, c in enumerate(self.source.columns)}
        for (model, rule), n in sorted(counts.items(), key=lambda kv: (place.get(kv[0][0].split("/")[0], 99), kv[0])):
            t.add_row(self.source.model_label(model), rule, f"{n:,}")
        return [head, Text(f"{len(a.suspects):,} cases with at least one suspect"), t]

    @staticmethod
    def _planted(a, names: list[str]) -> list:
        """Phantoms with a planted marker only: which models relied on it, and did map or rules show it."""
        truth = planted_check(a.con, a.columns)
        if not truth.computed:
            return []
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for h in ("model", "marked", "relied on it", "heat on it", "rules caught"):  # "flagged" is the user's word
            t.add_column(h, justify="left" if h == "model" else "right", no_wrap=True)
        label = dict(zip((c.model.model_id for c in a.columns), names))
        for r in truth.rows:
            t.add_row(label[r.model_id], f"{r.marked:,}", f"{r.relied:,}",
                      share_text(r.heat_relied),
                      "–" if r.caught is None else f"{r.caught:,} of {r.relied:,}")
        return [Text("Planted shortcut (phantom ground truth)", style="bold underline"),
                Text(f"painting the marker over with air changes the prediction: the model relied on it; "
                     f"an even map puts {share_text(truth.area)} of its heat there"), t, Text("")]

    def _sanity(self) -> list:
        """One line per model and method: the rank correlation left once every layer is re-initialised,
        and the verdict against the documented threshold (the report shows every stage)."""
        head = Text(f"Sanity checks (maps of fully randomised models must correlate < {FAIL_RHO} with the trained ones)",
                    style="bold underline")
        con = self.source.arrays.con
        rows = []
        if "sanity" in table_names(con):
            rows = con.execute("SELECT s.model_id, s.method, s.spearman, s.n_cases, s.stage FROM sanity s "
                               "JOIN (SELECT model_id, method, MAX(stage) last FROM sanity GROUP BY model_id, method) m "
                               "ON s.model_id = m.model_id AND s.method = m.method AND s.stage = m.last "
                               "ORDER BY s.model_id, s.method").fetchall()
        if not rows:
            return [head, Text("no sanity-check data in this cache", style="dim")]
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for h in ("model", "method", "stages", "final ρ", "cases", "verdict"):
            t.add_column(h, no_wrap=True)
        place = {c.model.model_id: i for i, c in enumerate(self.source.columns)}
        for model_id, method, rho, n, stage in sorted(rows, key=lambda r: (place.get(r[0], len(place)), r[0], r[1])):
            ok = rho < FAIL_RHO
            t.add_row(self.source.model_label(model_id), method, str(stage), f"{rho:.3f}", str(n),
                      Text("pass" if ok else "FAIL: maps barely depend on the weights", "green" if ok else "bold red"))
        return [head, t]
