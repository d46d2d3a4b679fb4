"""A virtual case table: only the visible lines are built, from rows fetched a page at a time.

A DataTable holding every row takes ~15 s to fill at 100,000 cases; this Line-API widget keeps just
the sorted idx array and asks the CaseSource for the rows on screen. Line 0 is a fixed header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gradfaith_tui.store.records import CaseRow
from gradfaith_tui.tui.render import class_name, fmt_metric, short_case_id
from gradfaith_tui.tui.source import CaseSource

GOOD, BAD, DIM = Style(color="green"), Style(color="red", bold=True), Style(dim=True)
FLAG, SUSPECT = Style(color="magenta", bold=True), Style(color="yellow", bold=True)
# Under the cursor the marks' colours meet the accent: in 16 colours red (and the flags' magenta, the suspects'
# yellow) on bright red. White on dark red or green stays readable there and in true colour; flags and suspects
# take the cursor's own colours (NO_COLOR gives every mark those).
BAD_ON_CURSOR = Style(color="#ffffff", bgcolor="#a00000", bold=True)
GOOD_ON_CURSOR = Style(color="#ffffff", bgcolor="#006000", bold=True)
MARK_ON_CURSOR = Style(bold=True)
FLAG_MARKS = {"unfaithful": "U", "shortcut": "S", "mislocalised": "M", "fine": "F", "note": "N"}
LOW = {"faith": 0.1, "locacc": 0.3, "iou": 0.3, "consist": 0.3}  # below this a value is flagged red


def _metric_cell(value: float | None, metric: str, width: int, selected: bool = False) -> list[Segment]:
    if value is None:
        return [Segment(fmt_metric(None, width), DIM)]
    if value >= LOW[metric]:
        return [Segment(fmt_metric(value, width))]
    text = fmt_metric(value, 0)  # the padding outside the low value's colours, which mark the number alone
    return [Segment(" " * (width - len(text))), Segment(text, BAD_ON_CURSOR if selected else BAD)]


class CaseTable(ScrollView, can_focus=True):
    """Sorted cases with one prediction mark per model and the worst Faith, LocAcc and Consist."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup,ctrl+u", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+d", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
    ]
    COMPONENT_CLASSES = {"case-table--header", "case-table--cursor"}

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)  # watch_cursor repaints
    sort_column: reactive[str] = reactive("case")
    descending: reactive[bool] = reactive(False)
    model: reactive[int] = reactive(-1)  # -1: metric columns show the worst model; else that model's values
    loc_metric = "locacc"  # the localisation column: LocAcc, or IoU while IoU sorts
    show_confidence = False  # each model's cell: its predicted class, or its confidence while confidence sorts

    @dataclass
    class Highlighted(Message):
        """The cursor moved to another case (or the order under it changed)."""

        idx: int
        position: int

    def __init__(self, source: CaseSource, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.virtual_size = Size(0, source.n_cases + 1)
        self._style_cache: tuple[Style, Style, Style] | None = None

    def notify_style_update(self) -> None:
        self._style_cache = None
        super().notify_style_update()

    def _styles(self) -> tuple[Style, Style, Style]:
        """(base, header, cursor), looked up once: rich_style costs ~0.3 ms a call, per line adds up."""
        if self._style_cache is None:
            self._style_cache = (self.rich_style, self.get_component_rich_style("case-table--header"),
                                 self.get_component_rich_style("case-table--cursor"))
        return self._style_cache

    # --- data -----------------------------------------------------------------------------------
    def set_order(self, order: np.ndarray, column: str, descending: bool = False, model: int = -1,
                  keep_idx: int | None = None) -> None:
        """Show a new order with the cursor on keep_idx when it is still shown, else on the first row."""
        self.source.order = order
        self.sort_column, self.descending, self.model = column, descending, model
        self.virtual_size = Size(0, len(order) + 1)
        pos = self.source.position_of(keep_idx) if keep_idx is not None else None
        self.cursor = pos or 0
        # after the refresh: until the new size is laid out a scroll is clamped to the old list's (a list widened
        # from one row would leave the kept case, and the flag keys' target, off screen)
        self.call_after_refresh(self._scroll_near, max(0, (pos or 0) - 2))
        self.refresh()

    def _scroll_near(self, top: int) -> None:
        self.scroll_to(y=top, animate=False, immediate=True)
        self.refresh()

    @property
    def n_rows(self) -> int:
        return len(self.source.order)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.n_rows - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        top = self.scroll_y
        self._scroll_to_cursor()
        if self.scroll_y == top:  # no scroll: only the two rows whose highlight changed
            self.refresh_line(old + 1)
            self.refresh_line(new + 1)
        else:
            self.refresh()
        self.post_message(self.Highlighted(self.source.idx_at(new) if self.n_rows else -1, new))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)

    # --- actions --------------------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        """Move the view and the cursor by a page (the visible rows less one, which stays in view), like a
        pager: the cursor keeps its line on screen until the view meets the first or last row."""
        visible = max(1, self.scrollable_content_region.height - 1)
        page = max(1, visible - 1)
        top = max(0, min(int(self.scroll_y) + direction * page, self.n_rows - visible))
        if top != int(self.scroll_y):
            self.scroll_to(y=top, animate=False, immediate=True)
            self.refresh()
        self.cursor += direction * page

    def action_jump(self, where: int) -> None:
        self.cursor = 0 if where == 0 else self.n_rows - 1

    def header_key(self, x: int) -> str | None:
        """The sort a click at column x of the header asks for (None off the sortable headers)."""
        id_w, _ = self._widths(self.scrollable_content_region.width)
        models = self._model_w() * len(self.source.columns)
        spans = [("case", 0, 1 + id_w), ("wrong", 1 + id_w + 8, 1 + id_w + 8 + models),
                 ("faith", 1 + id_w + 8 + models, 1 + id_w + 15 + models),
                 ("locacc", 1 + id_w + 15 + models, 1 + id_w + 23 + models),
                 ("consist", 1 + id_w + 23 + models, 1 + id_w + 32 + models)]
        return next((key for key, lo, hi in spans if lo <= x < hi), None)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:  # a header click sorts by that column, as f, l, c, w and n do
            key = self.header_key(event.x)
            if key == "locacc" and self.loc_metric == "iou":
                key = "iou"
            if key is not None:
                self.app.action_sort(key)
            return
        if event.y >= 1:
            self.cursor = int(self.scroll_y) + event.y - 1
            if event.chain >= 2:  # a double click opens the case, as enter does
                self.app.action_zoom()

    # --- drawing --------------------------------------------------------------------------------
    def _model_w(self) -> int:
        """A model's cell: "B✓ ", or while confidence sorts "100✓" (a sure model is 100, not a clamped 99)."""
        return 4 if self.show_confidence else 3

    def _widths(self, width: int) -> tuple[int, int]:
        """(case id width, fixed width of the rest)."""
        fixed = 9 + self._model_w() * len(self.source.columns) + 23 + 4  # cursor mark, class, marks, metrics, " Fl"
        return max(8, min(28, width - fixed)), fixed

    def _header(self, width: int) -> list[Segment]:
        id_w, _ = self._widths(width)
        arrow = "↓" if self.descending else "↑"
        mark = {c: (arrow if c == self.sort_column else " ") for c in ("case", "models", "faith", "locacc", "consist")}
        models = "".join(f"M{i + 1:<{self._model_w() - 1}}" for i in range(len(self.source.columns)))
        text = (f" {'Case' + mark['case']:<{id_w}} {'True':<6} {models[:-1]}{mark['models']}"
                f" {'Faith' + mark['faith']:>6} {('IoU' if self.loc_metric == 'iou' else 'LocAcc') + mark['locacc']:>7}"
                f" {'Consist' + mark['consist']:>8} Fl")
        return [Segment(text)]

    def _row(self, row: CaseRow, width: int, selected: bool) -> list[Segment]:
        id_w, _ = self._widths(width)
        mark = "▶" if selected else " "  # visible without colour too (captures, monochrome terminals)
        segs = [Segment(f"{mark}{short_case_id(row.case_id, id_w):<{id_w}} {class_name(row.label, short=True):<6} ")]
        for col in self.source.columns:
            res = row.results.get(col.model.name)
            if res is None or res.pred is None:
                segs.append(Segment(f"{'·':<3}", DIM))
                continue
            ok = row.label is not None and res.pred == row.label
            mark = (GOOD_ON_CURSOR if ok else BAD_ON_CURSOR) if selected else GOOD if ok else BAD
            if self.show_confidence and res.confidence is not None:  # the sorted values on screen: " 83✓", "100✓"
                pct = min(100, max(0, round(100 * res.confidence)))
                segs += [Segment(f"{pct:>3}"), Segment("✓" if ok else "✗", mark)]
            else:
                segs += [Segment(class_name(res.pred)[0]), Segment("✓" if ok else "✗", mark), Segment(" ")]
        for metric, width in (("faith", 6), (self.loc_metric, 7), ("consist", 8)):
            segs += [*_metric_cell(self._value(row, metric), metric, width, selected), Segment(" ")]
        flag = self.source.flags.get(row.idx) if self.source.flags else None
        segs.append(Segment(FLAG_MARKS.get(flag.category, "?") if flag else " ", MARK_ON_CURSOR if selected else FLAG))
        segs.append(Segment("⚠" if self.source.suspects(row.idx) else " ", MARK_ON_CURSOR if selected else SUSPECT))
        return segs

    def _value(self, row: CaseRow, metric: str) -> float | None:
        if self.model < 0:
            return row.worst(metric)
        res = row.results.get(self.source.columns[self.model].model.name)
        return res.metrics.get(metric) if res else None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base, header, cursor = self._styles()
        if y == 0:
            return Strip(self._header(width)).adjust_cell_length(width).apply_style(header)
        pos = int(self.scroll_y) + y - 1
        if pos >= self.n_rows:
            return Strip.blank(width, base)
        strip = Strip(self._row(self.source.row_at(pos), width, pos == self.cursor)).adjust_cell_length(width)
        if pos == self.cursor and self.app.no_color:
            # monochrome turns the marks' green and yellow into the cursor's own grey: the cursor's colours on top
            return Strip(list(Segment.apply_style(strip, post_style=cursor)), strip.cell_length)
        return strip.apply_style(cursor if pos == self.cursor else base)
