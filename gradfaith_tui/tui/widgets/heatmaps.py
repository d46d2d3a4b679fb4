"""The selected case's slice and every model's heatmap, as half-block pixel tiles in a wrapping grid.

Tiles are built in a thread worker (exclusive, so holding a key down only renders where it stops)
and cached per (case, column, size, overlay settings); the grid reflows and tiles are re-rendered on resize.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual import events, work
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from gradfaith_tui.tui.halfblock import PLAIN, grid_strips, pixel_strips, text_strips
from gradfaith_tui.tui.render import (Overlay, class_name, file_name, flag_mark, heatmap_tile, input_tile,
                                     label_lines, metric_lines, tile_layout)
from gradfaith_tui.tui.widgets.line import LineBar
from gradfaith_tui.tui.source import CaseMaps, CaseSource


SCALE_PIXELS = 4  # pixel tiles: image pixels per half-block pixel


def _label(lines: list[tuple[str, str]], n: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (line, style) in enumerate(lines[:n] + [("", "")] * (n - len(lines))):
        text.append(("\n" if i else "") + line, style)
    return text


class TileGrid(Widget):
    """Shows lines pre-rendered in the worker, so the UI thread never lays out pixel tables."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.strips: list[Strip] = []

    def set_strips(self, strips: list[Strip]) -> None:
        resized = len(strips) != len(self.strips)
        self.strips = strips
        self.refresh(layout=resized)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.strips)

    def render_line(self, y: int) -> Strip:
        return self.strips[y] if y < len(self.strips) else Strip.blank(self.size.width, PLAIN)


class HeatmapPanel(Vertical):
    """Title line plus the tile grid for `case_idx`."""

    case_idx: reactive[int | None] = reactive(None, repaint=False)  # the worker repaints
    overlay: reactive[Overlay] = reactive(Overlay(), repaint=False)
    MAX_TILES = 512

    @dataclass
    class Rendered(Message):
        """Tiles for a case are on screen (tests and benchmarks wait for this)."""

        idx: int

    def __init__(self, source: CaseSource, image_cls=None, overlay: Overlay = Overlay(), **kwargs):
        super().__init__(**kwargs)
        self.set_reactive(HeatmapPanel.overlay, overlay)
        self.source = source
        self.image_cls = image_cls  # a textual-image widget class: tiles at pixel resolution; None: half blocks
        self._tiles: OrderedDict[tuple, list[Strip]] = OrderedDict()
        self._tiles_lock = threading.Lock()  # a cancelled worker may still be finishing
        self._rendered_for = (0, 0)
        self._rendered_idx: int | None = None  # the case whose tiles are on screen
        self._pending = 0  # renders asked for and not yet shown

    def compose(self):
        yield LineBar("", id="case-title")
        if self.image_cls is not None:  # half blocks draw the suspect lines into the grid's strips
            yield Static("", id="case-suspects")
        with VerticalScroll(id="tiles-scroll", can_focus=False):  # clicks on a tile must not take the table's keys
            if self.image_cls is None:
                yield TileGrid(id="tiles")
            else:
                from gradfaith_tui.tui.widgets.pixel_tiles import PixelTiles

                yield PixelTiles(self.image_cls, id="tiles")

    def watch_case_idx(self, idx: int | None) -> None:
        if idx is not None:
            self.render_case(idx, *self._grid_size(idx))

    def render_case(self, idx: int, width: int, height: int) -> None:
        self._pending += 1
        self._render_case(idx, width, height)

    def watch_overlay(self) -> None:
        if self.case_idx is not None:
            self.render_case(self.case_idx, *self._grid_size(self.case_idx))

    def rerender(self) -> None:
        """Draw the current case again (its flag or the suspect data changed)."""
        if self.case_idx is not None:
            self.render_case(self.case_idx, *self._grid_size(self.case_idx))

    async def show_nothing(self, why: str) -> None:
        """No case to show (a filter matched none): clear the last case's title, tiles and reasons."""
        self.set_reactive(HeatmapPanel.case_idx, None)  # the next case renders, even the same one
        self._rendered_idx = None
        self.workers.cancel_group(self, "heatmaps")
        self.query_one("#case-title", LineBar).update(Text(why, style="dim"), layout=False)
        if self.image_cls is None:
            self.query_one(TileGrid).set_strips([])
        else:
            self._show_suspects(-1)
            await self.query_one("#tiles").remove_children()

    def on_resize(self, event: events.Resize) -> None:
        size = self._grid_size(self.case_idx)
        if size != self._rendered_for and self.case_idx is not None:
            self.render_case(self.case_idx, *size)

    def _grid_size(self, idx: int | None = None) -> tuple[int, int]:
        """Room for the suspect lines and the tiles: the panel less its title. (Pixel tiles: less the
        suspect lines this case will show, which appear only when its tiles do.)"""
        width = self.query_one("#tiles-scroll").scrollable_content_region.width
        lines = min(3, len(self.source.suspects(idx))) if idx is not None and self.image_cls is not None else 0
        return width, max(0, self.content_region.height - 1 - lines)

    def _suspect_texts(self, idx: int) -> list[str]:
        return [f"⚠ {self.source.model_label(s.model_id)}: {s.reason}" for s in self.source.suspects(idx)]

    @work(thread=True, exclusive=True, group="heatmaps")
    def _render_case(self, idx: int, width: int, height: int) -> None:
        size = (width, height)
        if width <= 0 or height <= 0:
            return
        if self._pending > 1:  # keys in quick succession: render only the case the cursor stops on
            time.sleep(0.03)
        if get_current_worker().is_cancelled:
            return
        data = self.source.case_maps(idx)
        # one line each, cut; a short panel keeps one, so its rows go to the tiles (each tile names its own)
        suspect_lines = [] if self.image_cls is not None else self._suspect_texts(idx)[:3 if height >= 20 else 1]
        height -= len(suspect_lines)
        n_tiles = 1 + len(self.source.columns)
        extra = 1 if self.source.has_suspects() else 0
        px, cols = tile_layout(width, height, n_tiles, extra=extra)
        if extra and -(-n_tiles // cols) * (px // 2 + label_lines(px) + 1) > height:
            extra = 0  # too short for a suspect line on each tile: the reasons are above the tiles anyway
            px, cols = tile_layout(width, height, n_tiles)
        overlay = self.overlay
        suspects = self.source.suspects(idx)
        if self.image_cls is not None:
            big = px * SCALE_PIXELS
            images = [input_tile(data.image, data.mask, big, overlay) if i == 0 else
                      heatmap_tile(data.image, data.heatmaps[i - 1], big, overlay, data.mask) for i in range(n_tiles)]
            labels = [_label(self._label_lines(data, i, px), label_lines(px)) for i in range(n_tiles)]
            self.app.call_from_thread(self._show, idx, data, (images, labels, px, cols), size)
            return
        tiles = [self._tile(data, i, px, overlay, suspects, extra) for i in range(n_tiles)]
        if get_current_worker().is_cancelled:
            return
        strips = [st for line in suspect_lines for st in text_strips(Text(line, "bold yellow"), width)]
        strips += grid_strips(tiles, cols, px)
        # as many lines as the panel has: the grid keeps its height from case to case (no relayout)
        strips += [Strip.blank(width, PLAIN)] * (height + len(suspect_lines) - len(strips))
        self.app.call_from_thread(self._show, idx, data, strips, size)

    def _tile(self, data: CaseMaps, i: int, px: int, overlay: Overlay, suspects: list, extra: int) -> list[Strip]:
        key = (data.row.idx, i, px, overlay if i else (overlay.outline, overlay.mono))
        with self._tiles_lock:
            pixels = self._tiles.get(key)
        if pixels is None:
            img = (input_tile(data.image, data.mask, px, overlay) if i == 0 else
                   heatmap_tile(data.image, data.heatmaps[i - 1], px, overlay, data.mask))
            pixels = pixel_strips(np.asarray(img))
            with self._tiles_lock:
                self._tiles[key] = pixels
                while len(self._tiles) > self.MAX_TILES:
                    self._tiles.popitem(last=False)
        lines = self._label_lines(data, i, px)
        n = label_lines(px)
        if extra:
            lines = lines[:n] + [("", "")] * (n - len(lines)) + [self._suspect_line(suspects, i)]
        return pixels + text_strips(_label(lines, n + extra), px)

    def _show_suspects(self, idx: int) -> None:
        """Every suspect reason of the case in words, one line each, above the tiles (hidden when none)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for k, line in enumerate(self._suspect_texts(idx)):
            text.append(("\n" if k else "") + line, "bold yellow")
        widget = self.query_one("#case-suspects", Static)
        if text.plain or widget.display:
            widget.display = bool(text.plain)
            widget.update(text)

    def _suspect_line(self, suspects: list, i: int) -> tuple[str, str]:
        """The suspects of tile i's model (other seeds say which), or of no shown model on the input tile."""
        parts = []
        for s in suspects:
            col, seed = self.source.column_of(s.model_id)
            if (col is None and i == 0) or (col is not None and col == i - 1):
                parts.append(s.reason if seed is None else f"{s.reason} (seed {seed})")  # the reason first: tiles are narrow
        return ("⚠ " + "; ".join(parts), "bold yellow") if parts else ("", "")

    def _label_lines(self, data: CaseMaps, i: int, px: int) -> list[tuple[str, str]]:
        row = data.row
        if i == 0:
            narrow = px < 12  # "input sli…", "true Beni…" would be cut: say less
            shown = f"mask: {self.overlay.outline_colour}" if self.overlay.outline else "mask: off"
            mask = ("mask" if narrow else shown) if data.mask is not None else "no mask"
            return [("input" if narrow else "input slice", "bold"),
                    (class_name(row.label, short=True) if narrow else f"true {class_name(row.label, short=px < 15)}", ""),
                    (mask, "green" if data.mask is not None else "dim")]
        col = self.source.columns[i - 1]
        res = row.results.get(col.model.name)
        lines = [(f"M{i} {col.model.name}", "bold")]
        if res is None or res.pred is None:
            return lines + [("no prediction", "dim")]
        ok = row.label is not None and res.pred == row.label
        conf = f"{res.confidence:.0%}" if res.confidence is not None else "?"
        hm = data.heatmaps[i - 1]
        flat = hm is not None and not np.ptp(np.nan_to_num(hm)) > 0  # no heat anywhere: it explains nothing
        pred = class_name(res.pred, short=True) if px >= (19 if flat else 14) else class_name(res.pred)[0]
        lines.append((f"{pred} {'✓' if ok else '✗'} {conf}" + (" flat" if flat else ""), "green" if ok and not flat else "bold red"))
        if hm is None:
            lines.append(("no map yet", "dim"))
        return lines + [(m, "") for m in metric_lines(res.metrics, px)]

    async def _show(self, idx: int, data: CaseMaps, strips, size: tuple[int, int]) -> None:
        self._pending = 0
        if idx != self.case_idx or not self.is_attached:
            return  # the cursor moved on while this rendered, or the app is closing
        self._rendered_for = size
        self._rendered_idx = idx
        row = data.row
        mask = "mask ✓" if row.has_mask else "no mask"
        flag = self.source.flags.get(idx) if self.source.flags else None
        title = Text(no_wrap=True, overflow="ellipsis")
        if flag is not None:  # first, so a narrow terminal cuts the rest and never the flag
            title.append(f"{flag_mark(flag, self.source.viewed_label)} · ", "bold magenta")
            if flag.note:
                title.append(f"“{flag.note}” · ", "magenta")
        title.append(file_name(row.case_id), "bold cyan")  # the table's row says its folder
        title.append(f" · true {class_name(row.label)} · {mask}" + (f" · {row.patient}" if row.patient else ""))
        self.query_one("#case-title", LineBar).update(title, layout=False)  # one line: no relayout per case
        if self.image_cls is None:
            self.query_one(TileGrid).set_strips(strips)
        else:
            self._show_suspects(idx)
            await self.query_one("#tiles").show(*strips)  # (images, labels, px, cols)
        self.post_message(self.Rendered(idx))
