"""User flags: a part of a cache that may not exist yet (the explorer creates the table on the first flag)."""

from __future__ import annotations

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.store.files import column_names
from gradfaith_tui.store.flags import NOTE_ONLY
from gradfaith_tui.store.reader import CacheReader


def flags(reader: CacheReader) -> list[dict]:
    """The user's flags and notes that are not undone, oldest first, with the case they point at; a note written
    without a flag has the category NOTE_ONLY (split off by notes_only)."""
    if "flags" not in reader.tables():
        return []
    viewed = "f.viewed" if "viewed" in column_names(reader.con, "flags") else "NULL"
    rows = reader.con.execute(
        f"SELECT f.flag_id, f.idx, f.category, f.note, f.created, {viewed} AS viewed, c.case_id, c.label FROM flags f "
        "LEFT JOIN cases c ON c.idx = f.idx WHERE f.undone = 0 ORDER BY f.created, f.flag_id").fetchall()
    return [{"flag_id": r["flag_id"], "idx": r["idx"], "case_id": r["case_id"] or f"#{r['idx']}",
             "label": CLASS_NAMES[r["label"]] if r["label"] is not None else "–",
             "category": r["category"], "note": r["note"], "created": r["created"],
             "viewed": r["viewed"]} for r in rows]


def notes_only(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(flags, notes without a flag): a note alone is the user's remark, not a judgement of the case."""
    return [f for f in rows if f["category"] != NOTE_ONLY], [f for f in rows if f["category"] == NOTE_ONLY]
