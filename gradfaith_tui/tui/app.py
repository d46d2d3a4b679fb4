"""The explorer: a virtual case table beside the selected case's heatmaps, sortable by the audit metrics.

Start-up stays fast: nothing here (or below) imports torch, timm or matplotlib; the CacheReader is
SQLite plus memory-mapped arrays.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.store.cache import CacheReader
from gradfaith_tui.tui.render import paper_label
from gradfaith_tui.tui.source import SORTS, CaseSource
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel

NARROW_BELOW = 100  # columns: stack the heatmaps under the table

KEYS = (
    ("up/k, down/j", "move the cursor one case"),
    ("pgup/ctrl+u, pgdn/ctrl+d", "move one page"),
    ("home/g, end/G", "first / last case"),
    ("f", "sort by lowest Faith (worst of the models)"),
    ("l", "sort by lowest LocAcc (worst of the models; cases without a mask last)"),
    ("c", "sort by lowest Consist (worst of the models)"),
    ("w", "sort by most models wrong"),
    ("n", "sort by case id"),
    ("r", "reverse the current order"),
    ("?", "this help (escape closes it)"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss", "Close help")]

    def __init__(self, text: Text):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(self.text, id="help-text")


class ExplorerApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "gradfaith-tui explorer"
    ENABLE_COMMAND_PALETTE = False  # its footer entry would push "q Quit" off an 80-column screen
    BINDINGS = [
        Binding("f", "sort('faith')", "Faith"),
        Binding("l", "sort('locacc')", "LocAcc"),
        Binding("c", "sort('consist')", "Consist"),
        Binding("w", "sort('wrong')", "Wrong"),
        Binding("n", "sort('case')", "Case"),
        Binding("r", "reverse", "Reverse"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    sort_key: reactive[str] = reactive("case", init=False)
    narrow: reactive[bool] = reactive(False, init=False)

    def __init__(self, reader: CacheReader):
        super().__init__()
        self.reader = reader
        self.source = CaseSource(reader)
        self.sub_title = str(reader.root)

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title")
        yield Static(self._legend(full=True), id="models")
        with Container(id="main"):
            with Vertical(id="table-pane"):
                yield CaseTable(self.source, id="cases")
                yield Static("loading…", id="status")
            yield HeatmapPanel(self.source, id="heatmaps")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(CaseTable).focus()
        self.narrow = self.size.width < NARROW_BELOW
        self.query_one("#models", Static).update(self._legend(full=not self.narrow, width=self.size.width))
        self.load_order("case")

    def on_resize(self, event: events.Resize) -> None:
        self.narrow = event.size.width < NARROW_BELOW
        self.query_one("#models", Static).update(self._legend(full=not self.narrow, width=event.size.width))

    def watch_narrow(self, narrow: bool) -> None:
        self.query_one("#main").set_class(narrow, "narrow")

    def _title(self) -> Text:
        r = self.reader
        return Text.assemble(("gradfaith-tui", "bold"), f" · cache {r.root} · {r.n_cases:,} test cases · ",
                             f"{r.method} · {len(r.columns)} models (reference seeds)")

    def _legend(self, full: bool, width: int = 0) -> Text:
        """Which model each column is and the paper architecture it stands for, packed into lines."""
        entries = []
        for i, c in enumerate(self.reader.columns):
            what = f"{c.model.describe} for " if full else f"{c.model.name}→"
            entries.append(Text.assemble((f"M{i + 1} ", "bold"), what + paper_label(c.model.family)))
        text, used = Text(), 0
        for e in entries:
            if used and width and used + 2 + len(e) > width:
                text.append("\n")
                used = 0
            elif used:
                text.append("  ")
                used += 2
            text.append_text(e)
            used += len(e)
        return text

    # --- sorting --------------------------------------------------------------------------------
    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self.query_one("#status", Static).update(f"sorting by {SORTS[key].label}…", layout=False)
        self.load_order(key)

    @work(thread=True, exclusive=True, group="sort")
    def load_order(self, key: str) -> None:
        order = self.source.sorted_order(key)
        self.call_from_thread(self._apply_order, key, order)

    def _apply_order(self, key: str, order) -> None:
        if key == self.sort_key:
            self.query_one(CaseTable).set_order(order, SORTS[key].column)

    def action_reverse(self) -> None:
        table = self.query_one(CaseTable)
        table.set_order(self.source.order[::-1].copy(), table.sort_column, not table.descending)

    # --- selection ------------------------------------------------------------------------------
    def on_case_table_highlighted(self, message: CaseTable.Highlighted) -> None:
        self.query_one(HeatmapPanel).case_idx = message.idx
        table = self.query_one(CaseTable)
        how = SORTS[self.sort_key].label + (", reversed" if table.descending else "")
        self.query_one("#status", Static).update(Text.assemble(
            ("Sort: ", "bold"), how, f" · case {message.position + 1:,}/{table.n_rows:,}"), layout=False)  # fixed height

    # --- help -----------------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen(self._help_text()))

    def _help_text(self) -> Text:
        """Keys, metric meanings and models, wrapped with a hanging indent to the help box's width."""
        width = max(40, min(int(self.size.width * 0.9), 110) - 5)  # box: 90%, border, padding, scrollbar
        text = Text()

        def item(head: str, body: str, indent: int) -> None:
            lines = textwrap.wrap(body, width - indent) or [""]
            text.append(f"  {head:<{indent - 2}}", "bold cyan")
            text.append(lines[0] + "\n" + "".join(" " * indent + ln + "\n" for ln in lines[1:]))

        text.append("Keys\n", "bold underline")
        for keys, what in KEYS:
            item(keys, what, 28)
        text.append("\nMetrics (the table shows the worst model's value)\n", "bold underline")
        for m in METRICS.values():
            item(m.label, f"({'higher' if m.higher_is_better else 'lower'} is better) {m.meaning}", 15)
        text.append("\nMarks\n", "bold underline")
        for head, body in (("M1..", "one table column per model: predicted class initial, ✓ right, ✗ wrong."),
                           ("–", "the metric does not apply (no lesion mask) or is not computed; red: a low value."),
                           ("tiles", "Grad-CAM upsampled (bicubic), min-max normalised, jet colours (blue low, red "
                                     "high) over the slice at 50%; the green outline on the input is the lesion mask.")):
            item(head, body, 15)
        text.append("\nModels\n", "bold underline")
        for i, c in enumerate(self.reader.columns):
            item(f"M{i + 1}", f"{c.model.name}: {c.model.describe} for {paper_label(c.model.family)}", 15)
        text.append("\nescape closes this help.", "dim")
        return text

    def on_unmount(self) -> None:
        self.source.close()


def make_app(cache: Path | str | CacheReader) -> ExplorerApp:
    """The explorer for a cache folder or an open reader (tests pass either)."""
    reader = cache if isinstance(cache, CacheReader) else CacheReader(Path(cache))
    return ExplorerApp(reader)


def run_explorer(cache: Path) -> None:
    """Open the cache (CacheError if missing or empty) and run the explorer until the user quits."""
    reader = CacheReader(Path(cache))
    try:
        ExplorerApp(reader).run()
    finally:
        reader.close()
