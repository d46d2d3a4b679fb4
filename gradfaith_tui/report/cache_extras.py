"""Parts of a cache that may or may not exist yet: user flags and later result tables (sanity, suspects)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.store.cache import CacheReader

# Result kinds the report knows about, with the table names they may be stored under.
OPTIONAL_KINDS: dict[str, tuple[str, ...]] = {
    "sanity": ("sanity", "sanity_checks"),
    "suspects": ("suspects",),
}
_MAX_ROWS = 200  # a report lists at most this many raw rows of a result table


@dataclass
class ResultTable:
    kind: str
    table: str | None  # None: this cache has no such result yet
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    total: int = 0
    reason_counts: list[tuple] = field(default_factory=list)  # (model or "", rule or reason, count)


def _tables(reader: CacheReader) -> set[str]:
    return {r[0] for r in reader.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def optional_results(reader: CacheReader) -> dict[str, ResultTable]:
    present = _tables(reader)
    out = {}
    for kind, names in OPTIONAL_KINDS.items():
        table = next((t for t in names if t in present), None)
        res = ResultTable(kind, table)
        if table is not None:
            cur = reader.con.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2, 3 LIMIT {_MAX_ROWS}')
            res.columns = [d[0] for d in cur.description]
            res.rows = [list(r) for r in cur.fetchall()]
            res.total = int(reader.con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
            # Count by the rule's name where there is one: a reason's text may carry the case's own value.
            why = next((c for c in ("rule", "reason") if c in res.columns), None)
            if why is not None:
                by = next((c for c in ("model", "model_id", "name") if c in res.columns), None)
                key = f'"{by}"' if by else "''"
                res.reason_counts = [tuple(r) for r in reader.con.execute(
                    f'SELECT {key}, "{why}", COUNT(*) FROM "{table}" GROUP BY 1, 2 ORDER BY 1, 2')]
        out[kind] = res
    return out


def flags(reader: CacheReader) -> list[dict]:
    """The user's flags that are not undone, oldest first, with the case they point at."""
    if "flags" not in _tables(reader):
        return []
    rows = reader.con.execute(
        "SELECT f.flag_id, f.idx, f.category, f.note, f.created, c.case_id, c.label FROM flags f "
        "LEFT JOIN cases c ON c.idx = f.idx WHERE f.undone = 0 ORDER BY f.created, f.flag_id").fetchall()
    return [{"flag_id": r["flag_id"], "idx": r["idx"], "case_id": r["case_id"] or f"#{r['idx']}",
             "label": CLASS_NAMES[r["label"]] if r["label"] is not None else "–",
             "category": r["category"], "note": r["note"], "created": r["created"]} for r in rows]
