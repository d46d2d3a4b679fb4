"""The explorer's data layer: sorted and filtered views, a page cache of table rows, case maps, flags.

Widgets never touch SQLite themselves. Rows for the visible table lines are read on the UI thread
(a page of 64 rows is a few milliseconds even at 100,000 cases). Sorting and filtering use column
arrays (store/arrays.py) read once in a worker on their own read-only connection; case maps are read
in workers on a second reader. Flags go through a separate read-write connection (store/flags.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradfaith_tui.store.arrays import WORST, CaseArrays, Filter
from gradfaith_tui.store.files import connect_readonly
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.records import CaseRow
from gradfaith_tui.store.flags import FlagStore, viewed_parts
from gradfaith_tui.store.schema import DB_NAME


@dataclass(frozen=True)
class SortSpec:
    key: str  # a CaseArrays.order key
    label: str  # what the status line says
    column: str  # the table column that gets the arrow
    reversed_label: str  # what it says after r
    high_first: bool = False  # the unreversed order is highest first (the header's arrow points down)


SORTS: dict[str, SortSpec] = {
    "case": SortSpec("case", "case id", "case", "case id, last first"),
    "faith": SortSpec("faith", "lowest Faith", "faith", "highest Faith"),
    "locacc": SortSpec("locacc", "lowest LocAcc (no mask last)", "locacc", "highest LocAcc (no mask last)"),
    "consist": SortSpec("consist", "lowest Consist", "consist", "highest Consist"),
    # IoU takes the LocAcc column's place while it sorts, so the sorted values are on screen
    "iou": SortSpec("iou", "lowest IoU (no mask last)", "locacc", "highest IoU (no mask last)"),
    "confidence": SortSpec("confidence", "lowest confidence", "models", "highest confidence"),
    "wrong": SortSpec("wrong", "most models wrong", "models", "fewest models wrong", high_first=True),
}


@dataclass(frozen=True)
class ViewSpec:
    """What the table shows: a sort key, for which model, in which direction, through which filter."""

    key: str = "case"
    model: int = WORST
    descending: bool = False
    filter: Filter = Filter()


@dataclass
class CaseMaps:
    """Everything the heatmap panel needs for one case, loaded off the UI thread."""

    row: CaseRow
    image: np.ndarray
    mask: np.ndarray | None
    heatmaps: list[np.ndarray | None]  # one per column, None where not computed


class CaseSource:
    PAGE = 64
    MAX_ROWS = 8192  # rows kept in the page cache

    def __init__(self, reader: CacheReader, flags_of: "CaseSource | None" = None):
        """flags_of: an earlier source of the same cache whose flag store (undo history, refused writes) this
        one takes over, as the explorer's reload does."""
        self.reader = reader
        self.columns = reader.columns
        self.n_cases = reader.n_cases
        self._bg = CacheReader(reader.root, reader.method)  # for worker threads
        self._bg_lock = threading.Lock()
        self._arrays_lock = threading.Lock()
        self._arrays: CaseArrays | None = None
        self._rows: OrderedDict[int, CaseRow] = OrderedDict()
        self.order = np.arange(self.n_cases, dtype=np.int64)
        self.view = ViewSpec()
        self._ids: dict[str, tuple[int, int | None]] | None = None  # model id or name -> (column, seed)
        self.flags: FlagStore | None
        self.flags_error = ""
        self.flags_readonly = False  # set when a write failed: the flags read stay shown, no more are written
        if flags_of is not None:
            self.flags, self.flags_error, self.flags_readonly = flags_of.flags, flags_of.flags_error, flags_of.flags_readonly
            flags_of.flags = None  # this source closes it now
            return
        try:
            self.flags = FlagStore(reader.root)
        except sqlite3.Error as exc:  # not even readable apart from the reader: browse without flags
            self.flags, self.flags_error = None, f"flags disabled: cannot open {reader.root / DB_NAME} ({exc})"
            return
        if self.flags.readonly:  # a shared cache this user cannot write: its flags shown and exported, none set
            self.flags_readonly = True
            self.flags_error = f"flags disabled: cannot write {reader.root / DB_NAME} ({self.flags.readonly})"

    def flags_failed(self, exc: Exception) -> str:
        """A flag write the database refused (a read-only folder, a full disk): flagging stops, with this reason."""
        self.flags_readonly = True
        self.flags_error = f"flags disabled: cannot write {self.root / DB_NAME} ({exc})"
        return self.flags_error

    @property
    def root(self) -> Path:
        return self.reader.root

    @property
    def arrays(self) -> CaseArrays:
        """The column arrays, read on first use (call from a worker on big caches)."""
        with self._arrays_lock:
            if self._arrays is None:
                con = connect_readonly(self.root / DB_NAME)
                self._arrays = CaseArrays(con, self.columns, self.n_cases)
            return self._arrays

    def warm(self) -> None:
        """Read the arrays the common sorts need (a worker calls this after the first paint)."""
        for m in ("faith", "locacc", "consist"):
            self.arrays.metric(m)
        self.arrays.case_ids()  # for the id search

    def same_models(self, fresh: CacheReader) -> bool:
        """Whether a fresh reader of the cache shows the models this source's table is laid out for."""
        return [c.model.model_id for c in fresh.columns] == [c.model.model_id for c in self.columns]

    def reload(self, fresh: CacheReader) -> None:
        """Forget what was read (column arrays, table rows, open map arrays), so that what a running
        precompute has written since shows; the next sort and the next case read it afresh through `fresh`, a
        new reader of the same cache showing the same models (same_models; else the app builds a new source)."""
        # A precompute with other settings replaced explanations: their ids (and map files) are new.
        self.reader.adopt_columns(fresh)
        self.columns = fresh.columns
        self._ids = None
        with self._arrays_lock:
            # dropped, not closed: a sort still running in a worker may be reading through it; its connection
            # closes when that worker lets go of it
            self._arrays = None
        self._rows.clear()
        with self._bg_lock:
            self._bg.close()
            self._bg = fresh

    def completeness(self) -> tuple[int, int, int, int]:
        """(cases done, expected, rows written after the maps, the masks' stamp) over the columns; call from a
        worker. Any change means R has something new to show."""
        with self._bg_lock:
            return (*self._bg.completeness(), self._bg.later_results(), self._bg.masks_stamp())

    def compute(self, view: ViewSpec) -> np.ndarray:
        """The idx array for a view (call from a worker: may read arrays on first use)."""
        flags = dict(self.flags.current) if self.flags else {}  # a copy: the UI thread may flag meanwhile
        return self.arrays.view(view.key, view.model, view.descending, view.filter, flags)

    def worst_model(self, key: str, idx: int) -> int:
        """The column whose value a worst-across-models row shows for this case (the first where none)."""
        a = self.arrays
        if key == "wrong":
            wrong = (a.preds[:, idx] >= 0) & (a.preds[:, idx] != a.labels[idx])
            return int(np.argmax(wrong)) if a.labels[idx] >= 0 else 0
        if key == "case":
            return 0  # no metric picked the row: the first model
        v = (a.metric_conf() if key == "confidence" else a.metric(key))[:, idx]
        return int(np.nanargmin(v)) if (~np.isnan(v)).any() else 0

    def model_name(self, model: int) -> str | None:
        return None if model == WORST else self.columns[model].model.name

    def column_of(self, model_id: str) -> tuple[int | None, int | str | None]:
        """(table column, seed) of a stored model id or name; seed None for the column's reference seed,
        column None for a model the table does not show."""
        if self._ids is None:
            ids: dict[str, tuple[int, int | None]] = {}
            by_name = {c.model.name: i for i, c in enumerate(self.columns)}
            for m in self.reader.models:
                if m.name in by_name:
                    ids[m.model_id] = (by_name[m.name], None if m.is_ref else m.seed)
            ids.update({name: (i, None) for name, i in by_name.items()})
            self._ids = ids
        hit = self._ids.get(model_id)
        if hit is None:  # an id this cache no longer lists, e.g. "resnet10t/seed1": its name and suffix
            name, _, rest = model_id.partition("/")
            col = self._ids.get(name, (None, None))[0]
            return (col, rest.removeprefix("seed") or None) if col is not None else (None, None)
        return hit

    def model_label(self, model_id: str) -> str:
        """How the explorer names a model: its column label (M1 resnet10t), plus the seed when it is not
        the reference seed; a model the table does not show keeps its id."""
        col, seed = self.column_of(model_id)
        if col is None:
            return model_id
        label = f"M{col + 1} {self.columns[col].model.name}"
        return label if seed is None else f"{label} seed {seed}"

    def viewed_label(self, viewed: str) -> str:
        """A flag's recorded map as the explorer names it: the model's label, with the method where it is not
        the one shown."""
        model_id, method = viewed_parts(viewed)
        label = self.model_label(model_id)
        return label if method is None or method == self.reader.method else f"{label} ({method})"

    def idx_at(self, pos: int) -> int:
        return int(self.order[pos])

    def position_of(self, idx: int) -> int | None:
        hits = np.flatnonzero(self.order == idx)
        return int(hits[0]) if len(hits) else None

    def row_at(self, pos: int) -> CaseRow:
        """The row shown at a table position; fetches the page around it on a miss."""
        idx = int(self.order[pos])
        row = self._rows.get(idx)
        if row is None:
            start = pos - pos % self.PAGE
            page = [int(i) for i in self.order[start:start + self.PAGE] if int(i) not in self._rows]
            for r in self.reader.rows(page):
                self._rows[r.idx] = r
            while len(self._rows) > self.MAX_ROWS:
                self._rows.popitem(last=False)
            row = self._rows[idx]
        else:
            self._rows.move_to_end(idx)
        return row

    def suspects(self, idx: int) -> list:
        a = self._arrays
        return a.suspects.get(idx, []) if a is not None else []

    def has_suspects(self) -> bool | None:
        """None until the arrays are read; then whether the cache has a suspects table."""
        return None if self._arrays is None else self._arrays.has_suspects

    def case_maps(self, idx: int) -> CaseMaps:
        """Row, slice, mask and every column's map for one case (call from a worker)."""
        row = self._rows.get(idx)  # the table read it a moment ago, almost always
        with self._bg_lock:
            if row is None:
                row = self._bg.rows([idx])[0]
            image = self._bg.image(idx)
            mask = self._bg.mask(idx) if row.has_mask else None
            maps = [self._bg.heatmap(c.expl_id, idx) if c.expl_id is not None else None for c in self.columns]
        return CaseMaps(row, image, mask, maps)

    # --- zoom: every seed and method of a model ---------------------------------------------------
    def variants(self, name: str) -> list[tuple[str, int, str, int]]:
        """(model_id, seed, method, expl_id) of every explanation stored for a model name."""
        with self._bg_lock:
            rows = self._bg.con.execute(
                "SELECT m.model_id, m.seed, e.method, e.expl_id FROM explanations e JOIN models m USING (model_id) "
                "WHERE m.name=? ORDER BY m.seed, e.method", (name,)).fetchall()
        return [tuple(r) for r in rows]

    def variant_maps(self, idx: int, model_id: str, expl_id: int) -> tuple[np.ndarray | None, dict, tuple]:
        """One explanation's map for a case, its metrics, and (pred, confidence) of that model."""
        with self._bg_lock:
            hm = self._bg.heatmap(expl_id, idx)
            metrics = {r[0]: r[1] for r in self._bg.con.execute(
                "SELECT name, value FROM metrics WHERE expl_id=? AND idx=?", (expl_id, idx))}
            p = self._bg.con.execute("SELECT pred, confidence FROM predictions WHERE model_id=? AND idx=?",
                                     (model_id, idx)).fetchone()
        return hm, metrics, (tuple(p) if p else (None, None))

    def close(self) -> None:
        with self._bg_lock:
            self._bg.close()
        if self.flags is not None:
            self.flags.close()
        if self._arrays is not None:
            self._arrays.con.close()
