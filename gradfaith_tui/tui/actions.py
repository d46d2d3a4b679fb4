"""Triage and overlay actions of the explorer: flags, notes, undo, export, search, heatmap drawing.

A mixin of ExplorerApp, kept apart so that each file stays readable. Every flag or note is committed
to the cache database by the FlagStore before the screen changes, so a crash loses nothing.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import replace

from gradfaith_tui.store.flags import NOTE_ONLY, export_flags, viewed_map
from gradfaith_tui.store.schema import DB_NAME
from gradfaith_tui.tui.render import COLORMAPS
from gradfaith_tui.tui.screens.ask import AskScreen
from gradfaith_tui.tui.widgets.case_table import CaseTable

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # an export folder that refuses this user, not a full disk


class TriageActions:
    """Needs self.source, self.reader, self.view, self.overlay, self.export_dir, self.export_fallback, apply_view,
    set_overlay, cache_gone."""

    def _current_idx(self) -> int | None:
        table = self.query_one(CaseTable)
        return self.source.idx_at(table.cursor) if table.n_rows else None

    def _flags_ok(self, write: bool = True) -> bool:
        """Whether flags can be changed (write) or read; says why not where they cannot."""
        if self.source.flags is None or (write and self.source.flags_readonly):
            self.notify(self.source.flags_error or "flags are disabled", severity="error")
            return False
        return True

    def _write_flags(self, change, unsaved: str = "") -> bool:
        """Run one flag change; a database that refuses it (a folder this user cannot write, a full disk)
        turns flagging off with one line instead of ending the explorer. True where it was written.
        unsaved: words of the user's that were not stored (a note), repeated in that line."""
        known = self.gone
        if self.cache_gone():  # a write into a deleted database would be lost with it
            if known or unsaved:  # (cache_gone has just said so where it found it)
                self.notify(self.source.flags_error + (f"; not saved: {unsaved}" if unsaved else ""), severity="error",
                            timeout=30 if unsaved else 10)
            return False
        try:
            change()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                return self._flags_refused(exc, unsaved)
            # Another writer held the database past the wait (5 s): this one change is refused, not flagging.
            self.notify(f"not saved: {self.source.root / DB_NAME} is busy (another program is writing it); try again"
                        + (f"; your note: {unsaved}" if unsaved else ""), severity="warning", timeout=30 if unsaved else 10)
            return False
        except sqlite3.Error as exc:
            return self._flags_refused(exc, unsaved)
        return True

    def _flags_refused(self, exc: sqlite3.Error, unsaved: str) -> bool:
        self.notify(self.source.flags_failed(exc) + (f"; not saved: {unsaved}" if unsaved else ""),
                    severity="error", timeout=30 if unsaved else 10)
        return False

    def _flag_changed(self, idx: int | None, then=None) -> None:
        table = self.query_one(CaseTable)
        table.refresh()
        panel = self.query_one("#heatmaps")
        if idx is not None and panel.case_idx == idx:
            panel.rerender()
        self._update_status(table.cursor)
        if then is not None:  # e.g. the zoom screen redraws its title
            then()

    def _viewed(self) -> str:
        """The map the table's flag judges: the chosen model's reference seed and the method shown, or "" across
        every model."""
        model = self.view.model
        if not 0 <= model < len(self.source.columns):
            return ""
        col = self.source.columns[model]
        return viewed_map(col.model.model_id, col.method)

    def action_flag(self, category: str) -> None:
        self.flag_case(self._current_idx(), category, viewed=self._viewed())

    def action_unflag(self) -> None:
        self.unflag_case(self._current_idx())

    def action_note(self) -> None:
        idx = self._current_idx()
        if idx is not None:
            self.note_case(idx, self.source.row_at(self.query_one(CaseTable).cursor).case_id, viewed=self._viewed())

    # The zoom screen calls these with the case it shows, which need not be the table's.
    def flag_case(self, idx: int | None, category: str, then=None, viewed: str | None = None) -> None:
        if idx is None or not self._flags_ok():
            return
        before = self.source.flags.get(idx)
        if not self._write_flags(lambda: self.source.flags.flag(idx, category, viewed)):
            return
        after = self.source.flags.get(idx)
        undone = after is None or after.category != category
        self.notify(f"unflagged ({before.category})" if undone and before else f"flagged {category}", timeout=1.5)
        self._flag_changed(idx, then)

    def unflag_case(self, idx: int | None, then=None) -> None:
        if idx is None or not self._flags_ok():
            return
        old = self.source.flags.get(idx)
        if old is None or old.category == NOTE_ONLY:
            return
        if not self._write_flags(lambda: self.source.flags.clear(idx)):
            return
        self.notify("flag removed", timeout=1.5)
        self._flag_changed(idx, then)

    def _fresh_flag(self, idx: int):
        """The case's flag as the database has it now; the one in memory while the database is locked."""
        try:
            return self.source.flags.sync(idx)
        except sqlite3.Error:
            return self.source.flags.get(idx)

    def note_case(self, idx: int, case_id: str, then=None, viewed: str | None = None) -> None:
        if not self._flags_ok():
            return
        old = self._fresh_flag(idx)  # another explorer on this cache may have written it meanwhile
        shown = old.note if old else ""

        def done(text: str | None) -> None:
            if text is None or not self._flags_ok():
                return
            now = self._fresh_flag(idx)
            theirs = now.note if now else ""
            if not self._write_flags(lambda: self.source.flags.note(idx, text, viewed), unsaved=text.strip()):
                return
            if theirs != shown and theirs != text.strip():  # changed by another explorer while this dialog was open
                what = "note saved" if text.strip() else "note removed"
                self.notify(f"{what}; another explorer had meanwhile " + (f"written: {theirs}" if theirs else
                            "removed the note"), severity="warning", timeout=30)
            else:
                self.notify("note saved" if text.strip() else "note removed", timeout=1.5)
            self._flag_changed(idx, then)
        self.push_screen(AskScreen(f"Note on {case_id}", shown, "what is wrong with this map?"), done)

    def action_undo(self) -> None:
        if not self._flags_ok():
            return
        touched: list[int | None] = []
        if not self._write_flags(lambda: touched.append(self.source.flags.undo())):
            return
        idx = touched[0]
        if idx is None:
            self.notify("nothing to undo: your last change was replaced by another explorer's since"
                        if self.source.flags.overtaken else "nothing to undo", timeout=4 if self.source.flags.overtaken else 1.5)
            return
        self.notify("undone", timeout=1.5)
        self._flag_changed(idx)

    def action_export(self) -> None:
        if not self._flags_ok(write=False):  # flags read from a read-only cache can still be exported elsewhere
            return
        if not self.source.flags.current:
            self.notify("no flagged cases to export", severity="warning")
            return
        out, why = self.export_dir, ""
        while True:
            try:
                csv_path, json_path = export_flags(self.source.flags, self.reader, out)
                break
            except OSError as exc:  # a file where the folder should be, no permission, a full disk
                where = exc.filename or out
                if out == self.export_dir and self.export_fallback is not None and exc.errno in NOT_WRITABLE:
                    # a shared cache this user cannot write: its flags go to a folder of theirs, said in the notice
                    out, why = self.export_fallback, f" ({where} cannot be written)"
                    continue
                self.notify(f"export failed: {where}: {exc.strerror or exc}", severity="error", timeout=10)
                return
        self.last_export = (csv_path, json_path)
        n = len(self.source.flags.current)
        self.notify(f"{n} case{'s' * (n != 1)} → {csv_path} and {json_path.name}{why}", timeout=8)

    def action_search(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                self.apply_view(replace(self.view, filter=replace(self.view.filter, search=text.strip())), keep_case=True)
        self.push_screen(AskScreen("Search case ids (part of an id; empty clears)", self.view.filter.search,
                                   "e.g. Malignant case (12"), done)

    # --- overlay ---------------------------------------------------------------------------------------
    def action_cycle_colormap(self) -> None:
        names = list(COLORMAPS)
        self.set_overlay(replace(self.overlay, colormap=names[(names.index(self.overlay.colormap) + 1) % len(names)]))

    def action_opacity(self, delta: float) -> None:
        self.set_overlay(replace(self.overlay, opacity=round(min(1.0, max(0.1, self.overlay.opacity + delta)), 2),
                                 alone=False))

    def action_toggle_outline(self) -> None:
        self.set_overlay(replace(self.overlay, outline=not self.overlay.outline))

    def action_toggle_alone(self) -> None:
        self.set_overlay(replace(self.overlay, alone=not self.overlay.alone))


__all__ = ["TriageActions"]
