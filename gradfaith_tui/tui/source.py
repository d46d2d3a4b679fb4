"""The explorer's data layer: sort orders, a page cache of table rows, and case maps, over CacheReader.

Widgets never touch SQLite themselves. Rows for the visible table lines are read on the UI thread
(a page of 64 rows is a few milliseconds even at 100,000 cases); sorting and map loading run in
worker threads on a second reader, behind a lock, so a slow sort never blocks a key press.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradfaith_tui.store.cache import CacheReader, CaseRow


@dataclass(frozen=True)
class SortSpec:
    key: str  # a CacheReader.order key
    label: str  # what the status line says
    column: str  # the table column that gets the arrow


SORTS: dict[str, SortSpec] = {
    "case": SortSpec("case", "case id", "case"),
    "faith": SortSpec("faith", "lowest Faith (worst model)", "faith"),
    "locacc": SortSpec("locacc", "lowest LocAcc (worst model; no mask last)", "locacc"),
    "consist": SortSpec("consist", "lowest Consist (worst model)", "consist"),
    "wrong": SortSpec("wrong", "most models wrong", "models"),
}


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

    def __init__(self, reader: CacheReader):
        self.reader = reader
        self.columns = reader.columns
        self.n_cases = reader.n_cases
        self._bg = CacheReader(reader.root, reader.method)  # for worker threads
        self._bg_lock = threading.Lock()
        self._rows: OrderedDict[int, CaseRow] = OrderedDict()
        self.order = np.arange(self.n_cases, dtype=np.int64)

    @property
    def root(self) -> Path:
        return self.reader.root

    def sorted_order(self, key: str) -> np.ndarray:
        """Case idx in the order of a sort key (slow on big caches: call from a worker)."""
        with self._bg_lock:
            return self._bg.order(key)

    def idx_at(self, pos: int) -> int:
        return int(self.order[pos])

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

    def case_maps(self, idx: int) -> CaseMaps:
        """Row, slice, mask and every column's map for one case (call from a worker)."""
        with self._bg_lock:
            row = self._bg.rows([idx])[0]
            image = self._bg.image(idx)
            mask = self._bg.mask(idx) if row.has_mask else None
            maps = [self._bg.heatmap(c.expl_id, idx) if c.expl_id is not None else None for c in self.columns]
        return CaseMaps(row, image, mask, maps)

    def close(self) -> None:
        with self._bg_lock:
            self._bg.close()
