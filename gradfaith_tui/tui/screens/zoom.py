"""Case zoom: one model's heatmap as large as the terminal allows, beside the input with the lesion outline.

Left/right switch the model, up/down the case, s the training seed and m the CAM method (where the
cache stores more than one). Tiles are rendered in a worker, like the main panel.
"""

from __future__ import annotations

from typing import Callable

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich_pixels import Pixels
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.strip import Strip
from textual.css.query import NoMatches
from textual.widgets import Footer, Static

from gradfaith_tui.errors import CacheError
from gradfaith_tui.store.flags import CATEGORIES, viewed_map
from gradfaith_tui.store.planted import share_text
from gradfaith_tui.tui.halfblock import styled
from gradfaith_tui.tui.render import Overlay, class_name, file_name, flag_mark, fmt_metric, heatmap_tile, input_tile
from gradfaith_tui.tui.source import CaseSource
from gradfaith_tui.tui.widgets.heatmaps import TileGrid


def _tile_size(width: int, height: int, label_lines: Callable[[int], int]) -> int:
    """The largest even tile side (pixels; two a text row) that leaves the labels under it all their lines.

    The labels wrap at the tile's width, so a smaller tile may need more lines; where nothing fits, the
    side that needs the fewest rows in all."""
    sizes = range(max(8, (width - 3) // 2) // 2 * 2, 7, -2)
    rows = {px: px // 2 + label_lines(px) for px in sizes}
    fits = [px for px in sizes if rows[px] <= height]
    return fits[0] if fits else min(sizes, key=lambda px: (rows[px], -px))


class ZoomScreen(Screen[int]):
    """Dismissed with the table position it ended on, so the table follows the cases browsed here.

    It holds the case (idx), not a table position: a sort still running when it opened may reorder the table
    under it, and every key here must act on the case on screen."""

    BINDINGS = [
        Binding("escape,enter,q", "back", "Back"),
        Binding("left,h", "model(-1)", "Model"),
        Binding("right,l", "model(1)", "Model", show=False),
        Binding("up,k", "case(-1)", "Case"),
        Binding("down,j", "case(1)", "Case", show=False),
        Binding("s", "seed", "Seed"),
        Binding("m", "method", "Method"),
        # flags and notes act on the case shown here, never on the table's (which may be another)
        *(Binding(str(k + 1), f"flag('{c}')", c.capitalize(), show=False) for k, c in enumerate(CATEGORIES)),
        Binding("0", "unflag", "Unflag", show=False),
        Binding("e", "note", "Note"),
        Binding("z,ctrl+z", "undo", "Undo", show=False),
    ]
    overlay: reactive[Overlay] = reactive(Overlay(), init=False)

    def __init__(self, source: CaseSource, position: int, model: int, overlay: Overlay):
        super().__init__()
        self.source, self.model = source, model
        self.idx = source.idx_at(position)
        self.seed_i, self.method_i = 0, 0
        self.set_reactive(ZoomScreen.overlay, overlay)

    def compose(self) -> ComposeResult:
        yield Static("", id="zoom-title")
        yield TileGrid(id="zoom-tiles")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.refresh_zoom()

    def on_resize(self) -> None:
        self.refresh_zoom()

    def watch_overlay(self) -> None:
        self.refresh_zoom()

    def _variants(self) -> tuple[list[int], list[str], tuple | None]:
        """Seeds and methods stored for the model, and the chosen (model_id, seed, method, expl_id)."""
        col = self.source.columns[self.model]
        rows = self.source.variants(col.model.name)
        seeds = sorted({r[1] for r in rows})
        methods = sorted({r[2] for r in rows}, key=lambda m: (m != col.method, m))
        if not rows:
            return seeds, methods, None
        seed, method = seeds[self.seed_i % len(seeds)], methods[self.method_i % len(methods)]
        pick = next((r for r in rows if r[1] == seed and r[2] == method), None)
        return seeds, methods, pick

    def action_model(self, delta: int) -> None:
        self.model = (self.model + delta) % len(self.source.columns)
        self.seed_i = self.method_i = 0
        self.refresh_zoom()

    def action_case(self, delta: int) -> None:
        here = self.position
        if here is None:  # the case left the table's view (a filter): stay on it
            return
        self.idx = self.source.idx_at(max(0, min(len(self.source.order) - 1, here + delta)))
        self.refresh_zoom()

    def action_back(self) -> None:
        self.dismiss(self.position)

    @property
    def position(self) -> int | None:
        """Where the case shown sits in the table's order now."""
        return self.source.position_of(self.idx)

    def _viewed(self) -> str | None:
        """The map on screen, as a flag records it: model id (so the seed) and method."""
        _, _, pick = self._variants()
        if pick is None:
            return None
        model_id, _, method, _ = pick
        return viewed_map(model_id, method)

    def action_flag(self, category: str) -> None:
        self.app.flag_case(self.idx, category, then=self.refresh_zoom, viewed=self._viewed())

    def action_unflag(self) -> None:
        self.app.unflag_case(self.idx, then=self.refresh_zoom)

    def action_note(self) -> None:
        if self.idx is not None:
            self.app.note_case(self.idx, self.source.reader.rows([self.idx])[0].case_id, then=self.refresh_zoom,
                               viewed=self._viewed())

    def action_undo(self) -> None:
        """Only a change to the case shown: the last change may be on another, which this screen does not show."""
        flags = self.source.flags
        target = flags.next_undo_idx() if flags is not None else None
        if target is not None and target != self.idx:
            case_id = self.source.reader.rows([target])[0].case_id
            self.app.notify(f"the last change was to {file_name(case_id)}: undo it from the table", severity="warning")
            return
        self.app.action_undo()
        self.refresh_zoom()

    def action_seed(self) -> None:
        self.seed_i += 1
        self.refresh_zoom()

    def action_method(self) -> None:
        self.method_i += 1
        self.refresh_zoom()

    def refresh_zoom(self) -> None:
        width, height = self.size.width, max(4, self.size.height - 2)
        if self.idx is not None:
            self.render_zoom(self.idx, width, height)

    @work(thread=True, exclusive=True, group="zoom")
    def render_zoom(self, idx: int, width: int, height: int) -> None:
        try:
            self._render_zoom(idx, width, height)
        except CacheError as exc:  # a map file removed or damaged since the cache was opened: say so, keep running
            self.app.call_from_thread(self.app.notify, f"cannot show this map: {exc}", severity="error", timeout=10)

    def _render_zoom(self, idx: int, width: int, height: int) -> None:
        data = self.source.case_maps(idx)
        col = self.source.columns[self.model]
        seeds, methods, pick = self._variants()
        hm, metrics, (pred, conf) = (self.source.variant_maps(idx, pick[0], pick[3]) if pick else (None, {}, (None, None)))
        row = data.row
        ok = pred is not None and row.label is not None and pred == row.label
        seed_txt = f"seed {pick[1]} ({seeds.index(pick[1]) + 1}/{len(seeds)})" if pick else "no map"
        method_txt = f"{pick[2]} ({methods.index(pick[2]) + 1}/{len(methods)})" if pick else ""
        outline = "no mask" if data.mask is None else \
            f"lesion outline: {self.overlay.outline_colour}" if self.overlay.outline else "lesion outline off (o)"
        lab_l = Text.assemble(("input slice", "bold"), f" · true {class_name(row.label)}\n", (outline, "green"))
        flag = self.source.flags.get(idx) if self.source.flags else None
        if flag is not None:
            lab_l.append(f"\n{flag_mark(flag, self.source.viewed_label)}", "bold magenta")
            if flag.note:
                lab_l.append(f"\nnote: {flag.note}", "magenta")
        # short lines: each half is only ~36 columns at 80x24; longer ones wrap, and the tiles shrink to fit them
        lab_r = Text.assemble((f"M{self.model + 1} {col.model.name}", "bold"), f" · {seed_txt}\n{method_txt} · ",
                              (f"{class_name(pred)} {'✓' if ok else '✗'} {conf:.0%}" if pred is not None else "no prediction",
                               "green" if ok else "bold red"),
                              f"\nFaith {fmt_metric(metrics.get('faith'), 0)}  LocAcc {fmt_metric(metrics.get('locacc'), 0)}"
                              f"\nConsist {fmt_metric(metrics.get('consist'), 0)}\n")
        if metrics.get("shortcut_flip") is not None:  # phantom ground truth: the planted marker on this slice
            relied, heat = metrics["shortcut_flip"] == 1.0, metrics.get("shortcut_heat")
            lab_r.append(f"marker: {'relied on' if relied else 'not used'}, "
                         f"{share_text(float('nan') if heat is None else heat)} of heat on it\n",
                         "bold magenta" if relied else "dim")
        shown = pick[0] if pick else col.model.model_id
        suspects = Text()  # under both tiles, across the screen: reasons are long, and a tile is ~36 columns at 80x24
        for s in self.source.suspects(idx):  # the seed shown: another seed's reasons are not this map's
            if s.model_id == shown or (s.model_id == col.model.name and shown == col.model.model_id):
                suspects.append(f"⚠ {s.reason}\n", "bold yellow")
        lab_r.rstrip()
        suspects.rstrip()
        console = Console(width=width, color_system="truecolor", force_terminal=True, legacy_windows=False)
        below = len(suspects.wrap(console, width)) if suspects else 0
        px = _tile_size(width, height,
                        lambda w: max(len(lab_l.wrap(console, w)), len(lab_r.wrap(console, w))) + below)
        left = input_tile(data.image, data.mask, px, self.overlay)
        right = heatmap_tile(data.image, hm, px, self.overlay, data.mask)
        grid = Table.grid(padding=(0, 1, 0, 0))
        grid.add_column(width=px)  # labels wrap within their tile's width: a long suspect reason is not cut
        grid.add_column(width=px)
        grid.add_row(Pixels.from_image(left), Pixels.from_image(right))
        grid.add_row(lab_l, lab_r)
        strips = [Strip(styled(line)) for line in console.render_lines(Group(grid, suspects) if suspects else grid,
                                                               console.options.update_width(width), pad=False)]
        where = self.position
        title = Text.assemble(("Zoom ", "bold"), (file_name(row.case_id), "bold cyan"),
                              f" · case {'?' if where is None else f'{where + 1:,}'}/{len(self.source.order):,} · "
                              f"{self.overlay.describe()}",
                              no_wrap=True, overflow="ellipsis")
        self.app.call_from_thread(self._show, title, strips)

    def _show(self, title: Text, strips: list[Strip]) -> None:
        if not self.is_attached:  # closed before its picture was ready: nothing to draw it on
            return
        try:
            self.query_one("#zoom-title", Static).update(title)
            self.query_one("#zoom-tiles", TileGrid).set_strips(strips)
        except NoMatches:  # being torn down
            return
