"""The cache's reader, for the explorer and the report: rows on demand, maps from memory-mapped arrays.
Torch-free, so the explorer starts fast."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from gradfaith_tui.errors import CacheError
from gradfaith_tui.store.files import (DAMAGED_DB, array_problem, has_mask_column, map_path, masks_problem, open_db,
                                       other_schema, table_names)
from gradfaith_tui.store.records import CaseRow, Column, ModelInfo, ModelResult, model_order, one_reference_each
from gradfaith_tui.store.schema import DB_NAME, IMAGES_NAME, MASKS_NAME


class CacheReader:
    """Read-only view for the explorer and the report: rows on demand, maps from memory-mapped arrays."""

    def __init__(self, root: Path, method: str | None = None):
        """method: whose maps the columns show; None: Grad-CAM where the cache has it, else the method of its
        last precompute (a cache made with --method rollout, say), else the first it holds."""
        self.root = Path(root)
        db = self.root / DB_NAME
        if not db.is_file():
            raise CacheError(f"--cache: no audit cache at {self.root} (run `gradfaith-tui precompute` or `gradfaith-tui demo`)")
        self.con = open_db(db, readonly=True)
        self._file = _identity(db)
        try:
            meta = {r["key"]: r["value"] for r in self.con.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as exc:
            self.con.close()
            raise CacheError(f"{db}: not a readable audit cache ({exc})") from None
        if not meta:  # created, then stopped before its first rows were committed
            self.con.close()
            raise CacheError(f"{db}: an unfinished cache (its precompute stopped before writing any case); rerun "
                             f"`gradfaith-tui precompute`")
        if other_schema(meta, db):
            self.con.close()
            raise other_schema(meta, db, "reads")
        self.meta = meta
        try:
            self._list(method)
            self._check_arrays()
        except sqlite3.OperationalError:
            self.con.close()
            raise
        except sqlite3.DatabaseError as exc:  # damaged past the meta table: its pages of models or cases
            self.con.close()
            raise CacheError(f"{db}: {DAMAGED_DB} ({exc}); rerun precompute into a new --cache folder") from None
        self._images = None
        self._masks = None
        self._maps: dict[int, np.ndarray] = {}
        self._names: list[str] | None = None

    def _list(self, method: str | None) -> None:
        """The cache's methods, the one shown, its cases and models; refuses a method or a cache with none."""
        self.methods = [r[0] for r in self.con.execute("SELECT DISTINCT method FROM explanations ORDER BY method")]
        if method is None:
            last = json.loads(self.meta.get("config", "{}")).get("method")
            method = next((m for m in ("gradcam", last) if m in self.methods), self.methods[0] if self.methods else "gradcam")
        elif self.methods and method not in self.methods:
            self.con.close()
            raise CacheError(f"--method: no {method} maps in {self.root} (it holds {', '.join(self.methods)})")
        self.method = method
        self.n_cases = int(self.con.execute("SELECT COUNT(*) FROM cases").fetchone()[0])
        self.models, self.columns = self._listed()
        if self.n_cases == 0 or not self.models:
            self.con.close()
            raise CacheError(f"{self.root}: the cache is empty (no cases or no models); run `gradfaith-tui precompute`")

    def _check_arrays(self) -> None:
        # A cache copied without its arrays (only audit.sqlite, say) is refused here rather than failing later
        # in the explorer's loading thread; the writer creates each array before the rows that point at it.
        maps = [(r[0], (r[1], r[2])) for r in self.con.execute("SELECT map_file, map_h, map_w FROM explanations") if r[0]]
        for f, _ in maps:
            map_path(self.root, f)  # refuses a name outside maps/ before anything is opened
        files = [IMAGES_NAME, MASKS_NAME, *(f for f, _ in maps)]
        missing = [f for f in files if not (self.root / f).is_file()]
        if missing:
            self.con.close()
            raise CacheError(f"{self.root / missing[0]}: missing from the cache ({len(missing)} of its {len(files)} "
                             f"array files); rerun `gradfaith-tui precompute` on this cache to compute them again, or "
                             f"copy the cache folder whole")
        # Damaged arrays (truncated, overwritten, of another shape) are refused here too, from their headers alone,
        # rather than failing in the middle of a report or in the explorer's loading thread.
        checks = [(IMAGES_NAME, np.uint8, None), (MASKS_NAME, np.uint8, None), *((f, np.float16, hw) for f, hw in maps)]
        for name, dtype, shape in checks:  # images first: a problem there stops before masks are compared with it
            problem = (masks_problem(self.root, self.n_cases, images_ok=True) if name == MASKS_NAME
                       else array_problem(self.root / name, self.n_cases, dtype, shape))
            if problem:
                self.con.close()
                raise CacheError(f"{self.root / name}: damaged ({problem}); rerun `gradfaith-tui precompute` on this "
                                 f"cache to repair it, or build it again into a new --cache folder")

    @property
    def config(self) -> dict:
        return json.loads(self.meta.get("config", "{}"))

    def _listed(self) -> tuple[list[ModelInfo], list[Column]]:
        """The models the cache lists now, and a column per name: its reference seed's newest explanation by
        this reader's method (None where it has none yet)."""
        expl = {r["model_id"]: r["expl_id"] for r in self.con.execute(
            "SELECT model_id, expl_id FROM explanations WHERE method=? ORDER BY expl_id", (self.method,))}
        models = one_reference_each(sorted(
            (ModelInfo(r["model_id"], r["name"], r["arch"], r["family"], r["describe"], r["seed"], bool(r["is_ref"]),
                       r["img_size"]) for r in self.con.execute("SELECT * FROM models")), key=model_order), set(expl))
        return models, [Column(m, expl.get(m.model_id), self.method) for m in models if m.is_ref]

    def completeness(self) -> tuple[int, int]:
        """(cases done, cases expected) over the columns the cache lists now with an explanation by this method
        (precompute registers one before its first batch), which a running precompute may have added since this
        reader opened: done where a map with its metrics is stored (as precompute counts it). Less than expected:
        precompute is still writing, or stopped early. A model never explained by this method is not missing maps."""
        began = not self.con.in_transaction
        if began:  # one snapshot: the columns and their counts
            self.con.execute("BEGIN")
        try:
            explained = [c.expl_id for c in self._listed()[1] if c.expl_id is not None]
            done = sum(int(self.con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id=? AND name='faith'",
                                            (e,)).fetchone()[0]) for e in explained)
        finally:
            if began:
                self.con.execute("COMMIT")
        return done, self.n_cases * len(explained)

    def later_results(self) -> int:
        """Rows precompute writes after the maps (the shown columns' Consist, every suspect): a count that changes
        while it finishes, after the last map's metrics are in."""
        ids = self._expl_ids()
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        consist = self.con.execute(f"SELECT COUNT(*) FROM metrics WHERE name='consist' AND value IS NOT NULL "
                                   f"AND expl_id IN ({marks})", ids).fetchone()[0]
        # every seed's of the shown method: the explorer names another seed's suspects too
        suspects = (self.con.execute("SELECT COUNT(*) FROM suspects s JOIN explanations e ON e.expl_id = s.expl_id "
                                     "WHERE e.method = ?", (self.method,)).fetchone()[0]
                    if "suspects" in self.tables() else 0)
        return int(consist) + int(suspects)

    def masks_stamp(self) -> int:
        """Changes when precompute replaces masks.npy (lesion masks redrawn, their metrics recomputed); 0 if gone."""
        try:
            return (self.root / MASKS_NAME).stat().st_mtime_ns
        except OSError:
            return 0

    def gone(self) -> str:
        """"deleted" or "replaced" where the database this reader opened is no longer the cache's (the folder
        deleted, or rebuilt by a new precompute or demo); "" while it is. Its connection still reads the old file,
        and writes through one would be lost with it."""
        now = _identity(self.root / DB_NAME)
        return "" if now == self._file else "deleted" if now is None else "replaced"

    def data_version(self) -> int:
        """Changes whenever another connection commits to the database (SQLite's PRAGMA data_version)."""
        return int(self.con.execute("PRAGMA data_version").fetchone()[0])

    def _expl_ids(self) -> list[int]:
        return [c.expl_id for c in self.columns if c.expl_id is not None]

    def rows(self, idxs) -> list[CaseRow]:
        """The cases with every shown model's prediction and metrics, read in one transaction: a batch that
        precompute commits meanwhile is in all of a row's parts or in none."""
        idxs = [int(i) for i in idxs]
        if not idxs:
            return []
        if self.con.in_transaction:
            return self._rows(idxs)
        self.con.execute("BEGIN")
        try:
            return self._rows(idxs)
        finally:
            self.con.execute("COMMIT")

    def _rows(self, idxs: list[int]) -> list[CaseRow]:
        ph = ",".join("?" * len(idxs))
        rows = {r["idx"]: CaseRow(r["idx"], r["case_id"], r["label"], r["patient"], bool(r["has_mask"]), r["shortcut"],
                                  {c.model.name: ModelResult() for c in self.columns})
                for r in self.con.execute(f"SELECT * FROM cases WHERE idx IN ({ph})", idxs)}
        by_model = {c.model.model_id: c.model.name for c in self.columns}
        for r in self.con.execute(f"SELECT model_id, idx, pred, confidence FROM predictions WHERE idx IN ({ph}) "
                                  f"AND model_id IN ({','.join('?' * len(by_model))})", (*idxs, *by_model)):
            res = rows[r["idx"]].results[by_model[r["model_id"]]]
            res.pred, res.confidence = r["pred"], r["confidence"]
        by_expl = {c.expl_id: c.model.name for c in self.columns if c.expl_id is not None}
        names = self._metric_names()
        if by_expl and names:
            # Naming the metrics lets SQLite seek the (expl_id, name, idx) key instead of scanning every row.
            for r in self.con.execute(f"SELECT expl_id, idx, name, value FROM metrics WHERE idx IN ({ph}) "
                                      f"AND expl_id IN ({','.join('?' * len(by_expl))}) "
                                      f"AND name IN ({','.join('?' * len(names))})", (*idxs, *by_expl, *names)):
                rows[r["idx"]].results[by_expl[r["expl_id"]]].metrics[r["name"]] = r["value"]
        return [rows[i] for i in idxs if i in rows]

    def settings(self, expl_id: int | None) -> dict:
        """The settings an explanation was made with (tau, baseline, target, consist_rule...); {} where none."""
        row = self.con.execute("SELECT settings FROM explanations WHERE expl_id=?", (expl_id,)).fetchone()
        return json.loads((row[0] if row else None) or "{}")

    def adopt_columns(self, fresh: "CacheReader") -> None:
        """A fresh reader's columns (a rerun may have replaced explanations), forgetting the metric names read so
        far: a metric written since (Consist, last of a precompute) is read from the next rows on."""
        self.columns = fresh.columns
        self._names = None

    def _metric_names(self) -> list[str]:
        """Distinct metric names of the shown explanations, by index seeks (a DISTINCT would scan every row)."""
        if self._names is None:
            names: set[str] = set()
            for e in self._expl_ids():
                last = ""
                while (row := self.con.execute("SELECT MIN(name) FROM metrics WHERE expl_id=? AND name>?",
                                               (e, last)).fetchone()) and row[0] is not None:
                    last = row[0]
                    names.add(last)
            self._names = sorted(names)
        return self._names

    def image(self, idx: int) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.root / IMAGES_NAME, mmap_mode="r")
        return np.asarray(self._images[idx])

    def mask(self, idx: int) -> np.ndarray:
        if self._masks is None:
            self._masks = np.load(self.root / MASKS_NAME, mmap_mode="r")
        return np.asarray(self._masks[idx]).astype(bool)

    def _map_file(self, expl_id: int) -> np.ndarray | None:
        """An explanation's memory-mapped map array, opened once; None where the explanation is gone."""
        if expl_id not in self._maps:
            f = self.con.execute("SELECT map_file FROM explanations WHERE expl_id=?", (expl_id,)).fetchone()
            if f is None:
                return None
            path = map_path(self.root, f["map_file"])
            try:
                self._maps[expl_id] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:  # removed or damaged since the cache was opened
                raise CacheError(f"{path}: map file missing or damaged ({exc.__class__.__name__}); rerun "
                                 f"`gradfaith-tui precompute` to compute it again") from None
        return self._maps[expl_id]

    def heatmap(self, expl_id: int, idx: int) -> np.ndarray | None:
        """One stored map as float32, or None where it is not computed yet."""
        maps = self._map_file(expl_id)
        if maps is None:
            return None
        m = np.asarray(maps[idx], dtype=np.float32)
        return None if np.isnan(m).all() else m

    def map_array(self, expl_id: int) -> np.ndarray | None:
        """Every case's stored map of one explanation as float32 (NaN where not computed yet), None where the
        explanation is gone."""
        maps = self._map_file(expl_id)
        return None if maps is None else np.asarray(maps, dtype=np.float32)

    def has_mask(self) -> np.ndarray:
        """(n_cases,) bool: the cases with a lesion mask, as the cases table records them (masks.npy may keep an
        older mask: the table wins)."""
        return has_mask_column(self.con, self.n_cases)

    def evaluation(self) -> dict[str, dict]:
        """Table I bodies by model id, in the reader's model order."""
        bodies = {r["model_id"]: json.loads(r["body"]) for r in self.con.execute("SELECT model_id, body FROM evaluation")}
        order = [m.model_id for m in self.models]
        return dict(sorted(bodies.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))

    def tables(self) -> set[str]:
        return table_names(self.con)

    def summary(self) -> list[dict]:
        """Per model (all seeds): accuracy and mean metrics over the cases where they exist."""
        out = []
        for m in self.models:
            acc = self.con.execute("SELECT AVG(p.pred = c.label), COUNT(*) FROM predictions p JOIN cases c ON c.idx=p.idx "
                                   "WHERE p.model_id=?", (m.model_id,)).fetchone()
            means = {r["name"]: r["v"] for r in self.con.execute(
                "SELECT name, AVG(value) v FROM metrics JOIN explanations e USING (expl_id) "
                "WHERE e.model_id=? AND e.method=? GROUP BY name", (m.model_id, self.method))}
            out.append({"model": m.model_id, "describe": m.describe, "family": m.family, "n": acc[1],
                        "accuracy": acc[0], **{k: means.get(k) for k in ("locacc", "faith", "consist")}})
        return out

    def close(self) -> None:
        self.con.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """The file a path names (device, inode); None where there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
