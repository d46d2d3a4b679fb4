"""The explorer: a virtual case table beside the selected case's heatmaps; sort, filter, flag, export.

Start-up stays fast: nothing here (or below) imports torch, timm or matplotlib; the CacheReader is
SQLite plus memory-mapped arrays. Sorting and filtering run in a worker over column arrays.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Container, Vertical
from textual.widgets import Footer, Static

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.store.arrays import WORST, Filter
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.flags import CATEGORIES
from gradfaith_tui.tui.actions import TriageActions
from gradfaith_tui.tui.commands import ExplorerCommands
from gradfaith_tui.tui.render import Overlay, paper_label
from gradfaith_tui.tui.screens.help import HelpScreen, help_text
from gradfaith_tui.tui.live import CACHE_POLL_S, CacheWatching
from gradfaith_tui.tui.screens.too_small import TooSmallScreen
from gradfaith_tui.tui.source import SORTS, CaseSource, ViewSpec
from gradfaith_tui.tui.terminal import graphics_in_tmux, terminal_problem, too_small
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel
from gradfaith_tui.tui.widgets.line import LineBar

NARROW_BELOW = 100  # columns: stack the heatmaps under the table
UNHELD_KEYS = ("ctrl+c", "ctrl+q")  # never wait for a sort
TABLE_ACTIONS = {"sort", "reverse", "cycle_model", "set_model", "cycle_filter", "set_filter", "clear_filters", "search",
                 "flag", "unflag", "note", "undo", "export", "zoom", "models", "reload"}


class ExplorerApp(TriageActions, CacheWatching, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "gradfaith-tui explorer"
    COMMANDS = App.COMMANDS | {ExplorerCommands}
    BINDINGS = [
        Binding("f", "sort('faith')", "Faith", show=False),
        Binding("l", "sort('locacc')", "LocAcc", show=False),
        Binding("c", "sort('consist')", "Consist", show=False),
        Binding("i", "sort('iou')", "IoU", show=False),
        Binding("w", "sort('wrong')", "Wrong", show=False),
        Binding("n", "sort('case')", "Case", show=False),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("m", "cycle_model", "Model", show=False),
        Binding("t", "cycle_filter('true')", "True class", show=False),
        Binding("p", "cycle_filter('pred')", "Predicted", show=False),
        Binding("v", "cycle_filter('correct')", "Right/wrong", show=False),
        Binding("s", "cycle_filter('suspect')", "Suspects", show=False),
        Binding("u", "cycle_filter('flagged')", "Flags", show=False),
        Binding("slash", "search", "Search"),
        Binding("escape", "clear_filters", "Clear filters", show=False),
        *(Binding(str(k + 1), f"flag('{c}')", c.capitalize(), show=False) for k, c in enumerate(CATEGORIES)),
        Binding("0", "unflag", "Unflag", show=False),
        Binding("e", "note", "Note"),
        Binding("z,ctrl+z", "undo", "Undo"),
        Binding("x", "export", "Export", show=False),
        Binding("enter", "zoom", "Zoom"),
        Binding("M", "models", "Models"),
        Binding("C", "cycle_colormap", "Colormap", show=False),
        Binding("left_square_bracket", "opacity(-0.1)", "Less heat", show=False),
        Binding("right_square_bracket", "opacity(0.1)", "More heat", show=False),
        Binding("o", "toggle_outline", "Outline", show=False),
        Binding("b", "toggle_alone", "Heat alone", show=False),
        Binding("R", "reload", "Reload", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, reader: CacheReader, name: str | None = None, export_dir: Path | None = None,
                 image_cls=None, colormap: str | None = None, notice: str | None = None):
        super().__init__()
        self.notice = notice  # said once the screen is up (the terminal is Textual's by then)
        self.image_cls = image_cls  # from graphics_widget(); None: half-block tiles
        self.graphics = "halfblock" if image_cls is None else image_cls.__name__
        self.reader = reader
        self.source = CaseSource(reader)
        self.cache_name = name or str(reader.root)
        self.export_dir = Path(export_dir) if export_dir else reader.root / "exports"
        # where `x` writes when the cache's own folder refuses this user (a shared cache); None: --export-dir was given
        self.export_fallback = None if export_dir else Path.cwd() / "gradfaith-exports" / reader.root.resolve().name
        self.view = ViewSpec()
        # NO_COLOR greys every colour: jet's hot red and cold blue become the same dark grey, the green outline
        # one more grey; so grey heat (unless asked for another) and a black-and-white outline
        self.overlay = Overlay(colormap=colormap or ("grey" if self.no_color else "jet"), mono=self.no_color)
        self.last_view_s = 0.0  # how long the last sort/filter took (benchmarks read it)
        self.first_paint_at = 0.0
        self.sub_title = self.cache_name
        self.completeness: tuple[int, ...] | None = None  # (maps done, expected, later rows, masks) when last counted
        self.stale = False  # the cache gained maps since they were read: R reloads
        self._notice_due = False  # new maps found while another screen was open: say so on coming back
        self._news = "new maps"  # what the cache gained, for the notice and the title (live._what_is_new)
        self._data_version = reader.data_version()
        self._held: list[events.Key] | None = None  # keys typed while a view is computed (hold_keys)
        self.gone = ""  # "deleted" or "replaced": the cache's database is no longer the one read (live.py)

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title")
        yield Static(self._legend(full=True), id="models")
        with Container(id="main"):
            with Vertical(id="table-pane"):
                yield CaseTable(self.source, id="cases")
                yield LineBar("loading…", id="status")
            yield HeatmapPanel(self.source, self.image_cls, overlay=self.overlay, id="heatmaps")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(CaseTable).focus()
        self._layout_for(self.size.width)
        self.apply_view(self.view)
        self.warm_arrays()
        self.call_after_refresh(self._painted)
        if self.source.flags_readonly:  # said at once, not at the first flag key
            self.notify(f"{self.source.flags_error}; browsing and x (export) work", severity="warning", timeout=8)
        self.set_interval(CACHE_POLL_S, self._poll_cache)
        self.screen_change_signal.subscribe(self, lambda _screen: self.call_after_refresh(self._announce))
        if self.notice:
            self.notify(self.notice, severity="warning", timeout=8)
        self._fit_screen(self.size.width, self.size.height)

    def _painted(self) -> None:
        self.first_paint_at = time.time()  # benchmarks read it

    @work(thread=True, group="warm")
    def warm_arrays(self) -> None:
        """Read the common sort columns in the background after the first paint."""
        time.sleep(0.05)
        self.source.warm()
        self.call_from_thread(self._arrays_ready)
        self.count_maps(announce=False)

    def _arrays_ready(self) -> None:
        if not self.is_running:  # as in _counted
            return
        self.query_one(CaseTable).refresh()  # suspect marks
        if self.source.has_suspects():
            self.query_one("#heatmaps").rerender()  # tiles get a suspect line

    def on_resize(self, event: events.Resize) -> None:
        self._layout_for(event.size.width)
        self._fit_screen(event.size.width, event.size.height)

    def _fit_screen(self, width: int, height: int) -> None:
        """Below the smallest usable size one centred line says so, over whatever screen was open; it goes when
        the terminal is large enough again."""
        shown = isinstance(self.screen, TooSmallScreen)
        if too_small(width, height):
            if shown:
                self.screen.resized(width, height)
            else:
                self.push_screen(TooSmallScreen(width, height))
        elif shown:
            self.pop_screen()

    def _layout_for(self, width: int) -> None:
        narrow = width < NARROW_BELOW
        self.query_one("#main").set_class(narrow, "narrow")
        # wide terminals: room for a whole case id (28 columns) instead of a cut one
        # narrow: the stylesheet's full width (an inline width would override it and cut the columns)
        self.query_one("#table-pane").styles.width = None if narrow else 80 if width >= 150 else 70
        self.query_one("#models", Static).update(self._legend(full=not narrow, width=width))

    def _title(self) -> Text:
        r = self.reader
        # the counts first: a long cache path is what a narrow terminal cuts
        text = Text.assemble(("gradfaith-tui", "bold"), f" · {r.n_cases:,} test cases · {r.method} · ",
                             f"{len(r.columns)} model{'s' * (len(r.columns) != 1)} (reference seeds) · ", no_wrap=True, overflow="ellipsis")
        done = self.completeness
        if self.gone:  # what is on screen is all there is: say so before anything else
            text.append(f"cache {self.gone}: flags off" + (", R opens the new one" if self.gone == "replaced" else ""),
                        "bold red")
            text.append(" · ")
        elif done is not None and done[0] < done[1]:  # precompute still writing, or stopped: say so before the path
            text.append(f"maps {done[0]:,}/{done[1]:,}" + (" (new: R reloads)" if self.stale else " (incomplete)"),
                        "bold yellow")
            text.append(" · ")
        elif self.stale:
            text.append(f"{self._news}: R reloads", "bold yellow")
            text.append(" · ")
        text.append(f"cache {self.cache_name}")
        return text

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

    # --- views: sort, model, filters ---------------------------------------------------------------
    def apply_view(self, view: ViewSpec, keep_case: bool = False) -> None:
        """Sort or filter in a worker; a new sort starts at the top, a filter keeps the case when it can."""
        self.view = view
        self.query_one("#status", LineBar).update("sorting…", layout=False)
        table = self.query_one(CaseTable)
        keep = self.source.idx_at(table.cursor) if keep_case and table.n_rows else None
        self.hold_keys()
        self.load_view(view, keep)

    def hold_keys(self) -> None:
        """Keys typed while a view is computed wait for it (keys pasted, or typed ahead over a slow link): `f 3`
        flags the first case of the new order, not the case the old order had under the cursor."""
        if self._held is None:
            self._held = []

    def _release_keys(self) -> None:
        held, self._held = self._held or [], None
        for key in held:
            self.post_message(events.Key(key.key, key.character))

    async def on_event(self, event: events.Event) -> None:
        if (self._held is not None and isinstance(event, events.Key) and not event.is_forwarded
                and len(self.screen_stack) == 1 and event.key not in UNHELD_KEYS):
            self._held.append(event)
            return
        await super().on_event(event)

    @work(thread=True, exclusive=True, group="view")
    def load_view(self, view: ViewSpec, keep_idx: int | None) -> None:
        t0 = time.perf_counter()
        order = self.source.compute(view)
        self.call_from_thread(self._apply_view, view, order, keep_idx, time.perf_counter() - t0)

    def _apply_view(self, view: ViewSpec, order, keep_idx: int | None, took: float) -> None:
        if view != self.view or not self.is_running:  # a stale sort, or the app closing (as in _counted)
            return
        self.last_view_s = took
        table = self.query_one(CaseTable)
        table.loc_metric = "iou" if view.key == "iou" else "locacc"
        table.show_confidence = view.key == "confidence"
        sort = SORTS[view.key]
        table.set_order(order, sort.column, view.descending != sort.high_first, view.model, keep_idx)
        if not len(order):
            self._update_status(-1)
            self.run_worker(self.query_one(HeatmapPanel).show_nothing("no case matches the filters (escape clears them)"))
        self._release_keys()

    def action_sort(self, key: str) -> None:
        self.apply_view(replace(self.view, key=key, descending=False))

    def action_reverse(self) -> None:
        self.apply_view(replace(self.view, descending=not self.view.descending))

    def action_cycle_model(self) -> None:
        model = self.view.model + 1
        # the case stays under the cursor, so its values can be compared model by model
        self.apply_view(replace(self.view, model=WORST if model >= len(self.source.columns) else model), keep_case=True)

    def action_set_model(self, model: int) -> None:
        self.apply_view(replace(self.view, model=model), keep_case=True)

    def action_cycle_filter(self, what: str) -> None:
        f = self.view.filter
        if what in ("true", "pred"):
            field = "true_class" if what == "true" else "pred_class"
            cur = getattr(f, field)
            nxt = 0 if cur is None else (cur + 1 if cur + 1 < len(CLASS_NAMES) else None)
            f = replace(f, **{field: nxt})
        elif what == "correct":
            f = replace(f, correct={None: False, False: True, True: None}[f.correct])
        elif what == "suspect":
            if self.source.has_suspects() is False:
                self.notify("no suspect data in this cache", severity="warning")
            f = replace(f, suspect=None if f.suspect else True)
        elif what == "flagged":
            cycle = [None, "any", *CATEGORIES, "note"]
            f = replace(f, flagged=cycle[(cycle.index(f.flagged) + 1) % len(cycle)])
        self.apply_view(replace(self.view, filter=f), keep_case=True)

    def action_set_filter(self, field: str, value) -> None:
        self.apply_view(replace(self.view, filter=replace(self.view.filter, **{field: value})), keep_case=True)

    def action_clear_filters(self) -> None:
        if self.view.filter.active():
            self.apply_view(replace(self.view, filter=Filter()), keep_case=True)

    # --- selection and status ----------------------------------------------------------------------
    def on_case_table_highlighted(self, message: CaseTable.Highlighted) -> None:
        if message.idx >= 0:
            self.query_one("#heatmaps").case_idx = message.idx
        self._update_status(message.position)

    def _update_status(self, position: int) -> None:
        v, table = self.view, self.query_one(CaseTable)
        who = self.source.model_name(v.model)
        sort = SORTS[v.key]
        how = sort.reversed_label if v.descending else sort.label
        if v.key == "wrong":  # a count over the models, or one model's own right/wrong
            how += f" ({who})" if who else ""
        elif v.key != "case":
            how += f" ({who or 'worst model'})"
        elif who:  # the metric columns show this model's values, though the order is by id
            how += f" · columns: {who}"
        text = Text.assemble(("Sort: ", "bold"), how, no_wrap=True, overflow="ellipsis")
        # the count before the filters' words, which are what a narrow line cuts
        text.append(f" · case {position + 1:,}/{table.n_rows:,}" if table.n_rows else " · no case matches")
        if v.filter.active():
            text.append(" · ")
            text.append(f"{v.filter.describe(CLASS_NAMES, who)}", "bold yellow")
        n_flags = len(self.source.flags.current) if self.source.flags else 0
        if n_flags:
            text.append(f" · {n_flags} flagged", "magenta")
        self.query_one("#status", LineBar).update(text, layout=False)  # fixed height

    # --- screens -----------------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self.size.width, self.reader.columns, self.overlay.colormap,
                                               self.overlay.outline_colour)))

    def action_models(self) -> None:
        from gradfaith_tui.tui.screens.models import ModelsScreen

        self.push_screen(ModelsScreen(self.source))

    def action_zoom(self) -> None:
        from gradfaith_tui.tui.screens.zoom import ZoomScreen

        table = self.query_one(CaseTable)
        if not table.n_rows:
            return
        model = self.view.model
        if model == WORST:  # the model whose value the row shows, not always M1
            model = self.source.worst_model(self.view.key, self.source.idx_at(table.cursor))

        def back(position: int | None) -> None:  # the table follows the cases browsed in the zoom
            if position is not None and position < table.n_rows:
                table.cursor = position
        self.push_screen(ZoomScreen(self.source, table.cursor, model, self.overlay), back)

    # --- overlay -----------------------------------------------------------------------------------
    def set_overlay(self, overlay: Overlay) -> None:
        self.overlay = overlay
        self.query_one("#heatmaps").overlay = overlay
        if hasattr(self.screen, "overlay"):
            self.screen.overlay = overlay
        self.notify(overlay.describe(), timeout=1.5)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The table's keys act only where the table is: on the zoom, models or help screen they would change
        (or flag) a case the user cannot see. The zoom screen binds its own flag and note keys."""
        if isinstance(self.screen, TooSmallScreen):  # nothing acts on what cannot be seen; quitting still works
            return action in ("quit", "help_quit")
        if action in TABLE_ACTIONS and sum(not isinstance(s, CommandPalette) for s in self.screen_stack) > 1:
            return False  # (the palette, itself a screen, closes before its action runs)
        return True

    def on_unmount(self) -> None:
        self.source.close()


def make_app(cache: Path | str | CacheReader, **kwargs) -> ExplorerApp:
    """The explorer for a cache folder or an open reader (tests pass either)."""
    reader = cache if isinstance(cache, CacheReader) else CacheReader(Path(cache))
    return ExplorerApp(reader, **kwargs)


def run_explorer(cache: Path, graphics: str = "halfblock", method: str | None = None,
                 export_dir: Path | None = None, colormap: str | None = None) -> None:
    """Open the cache (CacheError if missing or empty) and run the explorer until the user quits.

    graphics: halfblock (default), kitty, sixel, or auto (what textual-image detects, else half blocks);
    textual_image is imported only for the last three, here, before Textual takes the terminal."""
    from gradfaith_tui.tui.widgets.pixel_tiles import graphics_widget

    graphics, notice = graphics_in_tmux(graphics)
    image_cls = graphics_widget(graphics)
    reader = CacheReader(Path(cache), method)
    problem = terminal_problem(cache)
    if problem:
        reader.close()
        raise GradfaithError(problem)
    try:
        app = ExplorerApp(reader, name=str(cache), export_dir=export_dir, image_cls=image_cls, colormap=colormap,
                          notice=notice)
        app.run()
    finally:
        reader.close()
    if app.return_code:  # Textual has shown what went wrong; the shell should see it failed too
        raise SystemExit(app.return_code)


__all__ = ["ExplorerApp", "HelpScreen", "make_app", "run_explorer"]
