"""The explorer following a cache that changes under it: a running precompute adding maps, masks redrawn,
another explorer's flags. A mixin of ExplorerApp, as TriageActions is.

The poll is cheap (SQLite's data_version, no query); counting the maps runs in a worker, and R reloads.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from textual import work
from textual.widgets import Static

from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.store.arrays import WORST
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.schema import DB_NAME
from gradfaith_tui.tui.source import CaseSource
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel

CACHE_POLL_S = 2.0  # how often the explorer looks for maps a running precompute has added


class CacheWatching:
    """Needs self.reader, self.source, self.view, self.overlay, self.completeness, self.stale, _title,
    _layout_for, apply_view, load_view, warm_arrays, _update_status (ExplorerApp)."""

    def _poll_cache(self) -> None:
        """A commit by another connection (a precompute, or our own flags) may have added maps: count them."""
        if self.cache_gone():
            return
        try:
            version = self.reader.data_version()
        except sqlite3.Error:  # locked or unreadable for a moment: the next poll asks again
            return
        if version != self._data_version:
            self._data_version = version
            self.count_maps(announce=True)
            self._refresh_flags()

    def cache_gone(self) -> bool:
        """Whether the cache's database was deleted or replaced (a new demo or precompute into the same folder) since
        it was read. Flags then stop, said once: a flag written through the old connection would be lost with it."""
        how = self.reader.gone()
        if how and how != self.gone:
            self.gone = how
            db = self.reader.root / DB_NAME
            what = f"{db} was {how} after the explorer read it"
            if self.source.flags is not None:
                self.source.flags_readonly, self.source.flags_error = True, f"flags disabled: {what}"
            self.notify(f"{what}: flags are off" + ("; R opens the new one" if how == "replaced" else ""),
                        severity="error", timeout=10)
            self.query_one("#title", Static).update(self._title())
        return bool(how)

    def _refresh_flags(self) -> None:
        """Flags another explorer on this cache has set or removed since: shown, as the table's marks and counts."""
        flags = self.source.flags
        try:
            changed = flags is not None and flags.refresh()
        except sqlite3.Error:  # locked for a moment: the next commit asks again
            return
        if changed:
            table = self.query_one(CaseTable)
            table.refresh()
            self._update_status(table.cursor)
            self.query_one(HeatmapPanel).rerender()

    @work(thread=True, exclusive=True, group="count")
    def count_maps(self, announce: bool) -> None:
        done = self.source.completeness()
        self.call_from_thread(self._counted, done, announce)

    def _counted(self, done: tuple[int, ...], announce: bool) -> None:
        if not self.is_running:  # a worker's result arriving as the app closes: its widgets may be gone
            return
        if announce and self.completeness is not None and done != self.completeness:
            if not self.stale:  # once; the title keeps saying it
                self._news = _what_is_new(self.completeness, done)
                self._notice_due = True
                self._announce()
            self.stale = True
        self.completeness = done
        self.query_one("#title", Static).update(self._title())

    def _announce(self) -> None:
        """The new-maps notice, on the table's screen: over a zoom, the models screen or a dialog it would be
        read as about them (and the title that keeps saying it is hidden there), so it waits for the way back."""
        if self._notice_due and self.is_running and len(self.screen_stack) == 1:
            self._notice_due = False
            self.notify(f"the cache has {self._news}: R reloads", timeout=4)

    async def action_reload(self) -> None:
        try:
            fresh = CacheReader(self.reader.root, self.reader.method)
        except GradfaithError as exc:  # the cache was damaged meanwhile: say so, and keep showing what was read
            self.notify(f"cannot reload: {exc}", severity="error", timeout=10)
            return
        self.stale = self._notice_due = False
        if self.gone or self.reader.gone():  # a new database: everything read anew, flags through it
            self.gone = ""
            await self._reopen(fresh, new_flags=True)
        elif self.source.same_models(fresh):
            self.source.reload(fresh)
            self.apply_view(self.view, keep_case=True)
            self.query_one(HeatmapPanel).rerender()
        else:
            await self._reopen(fresh)
        self.warm_arrays()

    async def _reopen(self, fresh: CacheReader, new_flags: bool = False) -> None:
        """The cache lists other models than the table was laid out for (a precompute that registered more, or
        replaced some), or is a new database (new_flags: its own flags, no undo of the old one's): a new source,
        table and tiles, on the same case where it is still there."""
        table = self.query_one(CaseTable)
        keep = self.source.idx_at(table.cursor) if table.n_rows else None
        await self.workers.wait_for_complete()  # nothing still reading through the old source
        old = self.source
        self.reader, self.source = fresh, CaseSource(fresh, flags_of=None if new_flags else old)  # undo goes on
        self._data_version = fresh.data_version()  # counted per connection
        await table.remove()
        await self.query_one(HeatmapPanel).remove()
        await self.query_one("#table-pane").mount(CaseTable(self.source, id="cases"), before="#status")
        # the colormap, outline and opacity the user set
        await self.query_one("#main").mount(HeatmapPanel(self.source, self.image_cls, overlay=self.overlay, id="heatmaps"))
        old.close()
        old.reader.close()
        self.query_one(CaseTable).focus()
        self._layout_for(self.size.width)  # the legend lists the new models
        if self.view.model >= len(self.source.columns):
            self.view = replace(self.view, model=WORST)
        self.query_one("#title", Static).update(self._title())
        self.hold_keys()
        self.load_view(self.view, keep)
        self.count_maps(announce=False)



def _what_is_new(before: tuple[int, ...], now: tuple[int, ...]) -> str:
    """What a change of source.completeness() brought, in words: maps, redrawn lesion masks (their metrics
    recomputed), or results written after the maps (Consist, suspects)."""
    if before[:2] != now[:2]:
        return "new maps"
    return "new lesion masks" if before[3:] != now[3:] else "new results"
