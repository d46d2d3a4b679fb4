"""The user's flags and notes on cases: committed at once to the cache database, undoable, exportable.

A separate read-write connection to the cache's WAL database (the explorer's reader stays read-only); in a
folder this user cannot write, a read-only one: the flags there are shown and exported, none are written.
Every change is its own committed transaction, so a crash loses nothing. The `flags` table is a log:
a case's current flag is its one row with `undone = 0`. Setting a new flag or note supersedes the
current row (`undone = 2`); undo marks the newest change `undone = 1` and revives what it superseded;
clearing marks the current row `undone = 1`. Torch-free.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.models.card import replace_atomically  # torch-free
from gradfaith_tui.store.files import column_names, connect_readonly, table_names
from gradfaith_tui.store.schema import DB_NAME

EXPORT_KEPT = "the flags stay in the cache: free some space and export again"  # a full disk, said after the file

CATEGORIES: tuple[str, ...] = ("unfaithful", "shortcut", "mislocalised", "fine")
NOTE_ONLY = "note"  # the category of a note written on a case without a flag
ACTIVE, UNDONE, SUPERSEDED = 0, 1, 2

_DDL = """CREATE TABLE IF NOT EXISTS flags (
    flag_id INTEGER PRIMARY KEY, idx INTEGER NOT NULL, category TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0, viewed TEXT,
    replaces INTEGER)"""
# replaces: the flag_id of the row a new row superseded, 0 where it superseded none; NULL in rows from before


def viewed_map(model_id: str, method: str) -> str:
    """How a flag records the map in view: model id and CAM method, always (which method a cache shows by
    default changes as methods are added to it, so an unnamed one could later be read as another)."""
    return f"{model_id} ({method})"


def viewed_parts(viewed: str) -> tuple[str, str | None]:
    """(model id, method) of a recorded map; method None where a flag from before did not name it."""
    m = re.fullmatch(r"(.+) \(([^()]+)\)", viewed)
    return (m[1], m[2]) if m else (viewed, None)


@dataclass(frozen=True)
class Flag:
    flag_id: int
    idx: int
    category: str
    note: str
    created: str
    # the map in view when it was set (viewed_map: model, seed, method); "": the table across models; None: not recorded
    viewed: str | None = None


@dataclass(frozen=True)
class Change:
    """One undoable change: the row it added (or None) and the row it retired (or None)."""

    added: int | None
    retired: int | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FlagStore:
    """Current flags by case idx, kept in memory and mirrored to the database on every change."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.readonly = ""  # why this cache's flags can be read but not written ("" where they can be)
        try:
            self.con = sqlite3.connect(self.root / DB_NAME, check_same_thread=False, isolation_level=None)
            self.con.execute("PRAGMA busy_timeout=5000")
            self.con.execute(_DDL)
        except sqlite3.OperationalError as exc:  # a folder this user cannot write (a shared cache): its flags
            self.con.close()  # are still shown and exported, read as the explorer reads the rest
            self.con = connect_readonly(self.root / DB_NAME)
            self.readonly = str(exc)
        self._table = "flags" in table_names(self.con)  # none in a never-flagged cache opened read-only
        cols = column_names(self.con, "flags") if self._table else set()
        for name, kind in (("viewed", "TEXT"), ("replaces", "INTEGER")):  # a cache from before they were kept
            if name not in cols:
                try:
                    self.con.execute(f"ALTER TABLE flags ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError:  # a cache this user cannot write (its flags are still read), or
                    pass  # another explorer opening at the same moment added it first
        cols = column_names(self.con, "flags")
        self._viewed, self._replaces = "viewed" in cols, "replaces" in cols
        self.current: dict[int, Flag] = {}
        self.refresh()
        self._undo: list[Change] = []
        self._changed = False  # this session has changed a flag: undo walks back its own changes only
        # Undo in a session that has changed nothing yet takes back the newest flag set before it opened (so it
        # survives a restart), never one another explorer sets meanwhile.
        self._before = int(self.con.execute("SELECT COALESCE(MAX(flag_id), 0) FROM flags").fetchone()[0]) if self._table else 0
        self.overtaken = False  # this session's newest change was replaced by another explorer's since

    def refresh(self) -> bool:
        """Re-read the current flags (another explorer on this cache may have changed some); True if any did."""
        if not self._table:
            return False
        current = {r[1]: Flag(*r) for r in self.con.execute(
            f"SELECT {self._columns} FROM flags WHERE undone=0 ORDER BY flag_id")}
        changed = current != self.current
        self.current = current
        return changed

    def sync(self, idx: int) -> Flag | None:
        """The case's current flag as the database has it now, which another explorer may have changed (every
        change starts from it, and so does the note dialog)."""
        r = self.con.execute(f"SELECT {self._columns} FROM flags WHERE idx=? AND undone=0 "
                             "ORDER BY flag_id DESC LIMIT 1", (idx,)).fetchone()
        if r is None:
            self.current.pop(idx, None)
        else:
            self.current[idx] = Flag(*r)
        return self.current.get(idx)

    @property
    def _columns(self) -> str:
        return "flag_id, idx, category, note, created, " + ("viewed" if self._viewed else "NULL")

    def get(self, idx: int) -> Flag | None:
        return self.current.get(idx)

    def _commit(self, idx: int, category: str | None, note: str, viewed: str | None = None) -> Change:
        old = self.current.get(idx)
        added = None
        self.con.execute("BEGIN IMMEDIATE")
        try:
            if old is not None:
                # every current row of the case: two explorers flagging one case must not leave two of them
                self.con.execute("UPDATE flags SET undone=? WHERE idx=? AND undone=0",
                                 (SUPERSEDED if category is not None else UNDONE, idx))
            if category is not None:
                created = _now()
                extra = {**({"viewed": viewed} if self._viewed else {}),
                         **({"replaces": old.flag_id if old is not None else 0} if self._replaces else {})}
                added = int(self.con.execute(
                    "INSERT INTO flags (idx, category, note, created, undone" + "".join(f", {k}" for k in extra)
                    + ") VALUES (?,?,?,?,0" + ",?" * len(extra) + ")",
                    (idx, category, note, created, *extra.values())).lastrowid)
            self.con.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if category is not None:
            self.current[idx] = Flag(added, idx, category, note, created, viewed if self._viewed else None)
        else:
            self.current.pop(idx, None)
        change = Change(added, old.flag_id if old else None)
        self._undo.append(change)
        self._changed, self.overtaken = True, False
        return change

    def flag(self, idx: int, category: str, viewed: str | None = None) -> Flag:
        """Flag a case (keeping its note); flagging it again with the same category clears the flag.
        viewed: the map in view (viewed_map); "" from the table across models."""
        old = self.sync(idx)
        if old is not None and old.category == category:
            self.clear(idx)
            return old
        self._commit(idx, category, old.note if old else "", viewed)
        return self.current[idx]

    def note(self, idx: int, text: str, viewed: str | None = None) -> Flag | None:
        """Write (or with an empty text, remove) the note of a case, keeping its category and the map its flag
        was set on (the category was judged on that map); viewed is kept only for a note without a flag."""
        old = self.sync(idx)
        category = old.category if old else NOTE_ONLY
        if not text.strip() and category == NOTE_ONLY:
            if old is not None:
                self._commit(idx, None, "")
            return None
        flagged = old is not None and category != NOTE_ONLY and old.viewed is not None
        self._commit(idx, category, text.strip(), old.viewed if flagged or viewed is None and old else viewed)
        return self.current[idx]

    def clear(self, idx: int) -> None:
        """Remove the case's flag; its note stays (a user's words are only removed by emptying the note)."""
        old = self.sync(idx)
        if old is None or old.category == NOTE_ONLY:
            return
        self._commit(idx, NOTE_ONLY if old.note else None, old.note, old.viewed)

    def _next_undo(self) -> Change | None:
        """What undo() would undo: the newest change of this session still standing; in a session that has changed
        nothing (undone nothing either), the newest flag set before it opened. Never a flag another explorer set
        meanwhile."""
        if not self._table:
            return None
        while self._undo and not self._still_current(self._undo[-1]):
            self._undo.pop()  # another explorer has changed that case since: undoing would revive a second flag
            self.overtaken = True
        if self._undo:
            return self._undo[-1]  # popped once written: a refused write leaves it to undo
        if self._changed:  # this session's own changes are all undone or overtaken: nothing of others'
            return None
        row = self.con.execute("SELECT flag_id FROM flags WHERE undone=0 AND flag_id<=? ORDER BY flag_id DESC LIMIT 1",
                               (self._before,)).fetchone()
        if row is None:
            return None
        replaced = (self.con.execute("SELECT replaces FROM flags WHERE flag_id=?", (row[0],)).fetchone()[0]
                    if self._replaces else None)
        if replaced is None:  # a row from before they were recorded: the case's newest superseded row before it
            prev = self.con.execute("SELECT flag_id FROM flags WHERE undone=? AND idx=(SELECT idx FROM flags WHERE "
                                    "flag_id=?) AND flag_id<? ORDER BY flag_id DESC LIMIT 1",
                                    (SUPERSEDED, row[0], row[0])).fetchone()
            replaced = prev[0] if prev else 0
        elif replaced and self.con.execute("SELECT undone FROM flags WHERE flag_id=?",
                                           (replaced,)).fetchone() != (SUPERSEDED,):
            replaced = 0  # no longer waiting to come back
        return Change(row[0], replaced or None)

    def _still_current(self, change: Change) -> bool:
        """Whether the case still stands as the change left it (its added row current, or none where it cleared)."""
        fid = change.added if change.added is not None else change.retired
        active = {r[0] for r in self.con.execute("SELECT flag_id FROM flags WHERE undone=0 AND idx=(SELECT idx FROM "
                                                 "flags WHERE flag_id=?)", (fid,))}
        return active == ({change.added} if change.added is not None else set())

    def next_undo_idx(self) -> int | None:
        """The case undo() would change (None: nothing to undo), so a screen showing one case can refuse others."""
        change = self._next_undo()
        if change is None:
            return None
        fid = change.added if change.added is not None else change.retired
        return int(self.con.execute("SELECT idx FROM flags WHERE flag_id=?", (fid,)).fetchone()[0])

    def undo(self) -> int | None:
        """Undo the newest change of this session, or else the newest active flag in the database.

        Returns the case idx it touched, or None when there is nothing to undo.
        """
        change = self._next_undo()
        if change is None:
            return None
        self.con.execute("BEGIN IMMEDIATE")
        try:
            if change.added is not None:
                self.con.execute("UPDATE flags SET undone=? WHERE flag_id=?", (UNDONE, change.added))
            if change.retired is not None:
                self.con.execute("UPDATE flags SET undone=0 WHERE flag_id=?", (change.retired,))
            self.con.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if self._undo and self._undo[-1] is change:
            self._undo.pop()
        else:  # the newest flag of an earlier session: one only, as there is no redo to take a second back
            self._changed = True
        fid = change.added if change.added is not None else change.retired
        idx = int(self.con.execute("SELECT idx FROM flags WHERE flag_id=?", (fid,)).fetchone()[0])
        self.current.pop(idx, None)
        if change.retired is not None:
            self.current[idx] = Flag(*self.con.execute(
                f"SELECT {self._columns} FROM flags WHERE flag_id=?", (change.retired,)).fetchone())
        return idx

    def _rollback(self) -> None:
        """Roll back a failed change, if it got as far as a transaction (a BEGIN refused has none to roll back),
        so that the caller sees the error that stopped it."""
        if self.con.in_transaction:
            self.con.execute("ROLLBACK")

    def close(self) -> None:
        self.con.close()


EXPORT_METRICS = ("faith", "faith_logit", "locacc", "iou", "consist")


def _suspect_reasons(con, idxs: list[int]) -> dict[int, list[dict]]:
    """idx -> [{model_id, rule, reason}] of the engine's suspects (none where the cache has no suspects table)."""
    if not idxs or "suspects" not in table_names(con):
        return {}
    out: dict[int, list[dict]] = {}
    marks = ",".join("?" * len(idxs))
    for idx, model_id, rule, reason in con.execute(
            f"SELECT idx, model_id, rule, reason FROM suspects WHERE idx IN ({marks}) ORDER BY model_id, rule", idxs):
        out.setdefault(idx, []).append({"model_id": model_id, "rule": rule, "reason": reason})
    return out


def export_flags(store: FlagStore, reader, out_dir: Path) -> tuple[Path, Path]:
    """Write the flagged cases with every model's prediction, metrics and the note to CSV and JSON."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = sorted(store.current.values(), key=lambda f: f.flag_id)
    rows = {r.idx: r for r in reader.rows([f.idx for f in flags])}
    reasons = _suspect_reasons(reader.con, [f.idx for f in flags])
    ref_ids = {m.model_id for m in reader.models if m.is_ref}  # the row's values are the reference seed's
    records = []
    for f in flags:
        row = rows.get(f.idx)
        rec = {"case_id": row.case_id if row else f"#{f.idx}", "idx": f.idx, "category": f.category, "note": f.note,
               "flagged": f.created, "viewed": f.viewed, "patient": row.patient if row else None,
               "true": CLASS_NAMES[row.label] if row and row.label is not None else None, "models": {}}
        for name, res in (row.results.items() if row else ()):
            rec["models"][name] = {"pred": CLASS_NAMES[res.pred] if res.pred is not None else None,
                                   "confidence": res.confidence,
                                   **{m: res.metrics.get(m) for m in EXPORT_METRICS if m in res.metrics}}
        rec["suspects"] = reasons.get(f.idx, [])  # the engine's reasons, in words, every model and seed
        records.append(rec)
    json_path, csv_path = out_dir / "flagged.json", out_dir / "flagged.csv"
    # Each file replaced whole: a full disk leaves the last export as it was (the flags are in the cache anyway).
    replace_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(records, indent=2)), EXPORT_KEPT)

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "idx", "category", "note", "flagged", "viewed", "patient", "true", "model", "pred",
                        "confidence", *EXPORT_METRICS, "suspects"])
            for rec in records:
                for name, m in rec["models"].items() or [("", {})]:
                    mine = "; ".join(s["reason"] if s["model_id"] in ref_ids else f"{s['reason']} ({s['model_id'].split('/')[-1]})"
                                     for s in rec["suspects"] if s["model_id"].split("/")[0] == name)
                    w.writerow([rec["case_id"], rec["idx"], rec["category"], rec["note"], rec["flagged"], rec["viewed"],
                                rec["patient"], rec["true"], name, m.get("pred"), m.get("confidence"),
                                *(m.get(k) for k in EXPORT_METRICS), mine])
    replace_atomically(csv_path, write_csv, EXPORT_KEPT)
    return csv_path, json_path
