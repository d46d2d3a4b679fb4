"""The cache's writer: atomic, resumable, one at a time (a lock file per cache folder).

A map row is flushed to disk before the transaction that records its metrics commits, so a reader (or a resumed
run) only ever trusts rows whose maps are complete.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from gradfaith_tui.errors import CacheError
from gradfaith_tui.locks import writer_lock
from gradfaith_tui.models.card import as_fingerprints, replace_atomically  # torch-free
from gradfaith_tui.store.files import (DAMAGED_DB, RESULTS_KEPT, array_problem, column_names, has_mask_column,
                                       key_fingerprint, map_path, masks_problem, note_data_fingerprint, open_db,
                                       other_cache, other_schema, table_names)
from gradfaith_tui.store.records import CaseInfo, ModelInfo
from gradfaith_tui.store.schema import DB_NAME, DDL, IMAGES_NAME, MAPS_DIR, MASKS_NAME, SCHEMA_VERSION


def _sql_floats(values) -> list:
    """Floats with NaN and inf as None (SQL NULL), converted in bulk rather than one np.isfinite per value."""
    v = np.asarray(values, dtype=np.float64)
    out = v.astype(object)
    out[~np.isfinite(v)] = None
    return out.tolist()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _nan_maps(path: Path, n: int, shape: tuple[int, int]) -> None:
    """An (n, h, w) float16 array file of NaN ("not computed yet"), written through the file, not a memory map:
    a memory-mapped file is created sparse, and filling it on a full disk kills the process (SIGBUS) where a
    write raises an error that can be said in one line. Later batches write into the blocks reserved here."""
    row = np.full(shape, np.nan, np.float16).tobytes()
    per = max(1, (1 << 20) // len(row))  # about 1 MB a write
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                 "fortran_order": False, "shape": (n, *shape)})
        for start in range(0, n, per):
            f.write(row * min(per, n - start))


def _add_columns(con: sqlite3.Connection) -> None:
    """Columns newer than a reopened cache (the schema version stays: readers take a cache without them)."""
    if "trained_elsewhere" not in column_names(con, "models"):
        try:
            con.execute("ALTER TABLE models ADD COLUMN trained_elsewhere TEXT")
        except sqlite3.OperationalError as exc:  # another torchrun rank added it first
            if "duplicate column" not in str(exc):
                raise


class CacheWriter:
    """Creates or reopens a cache for one dataset and test split; refuses one made from other data."""

    def __init__(self, root: Path, fingerprint: str | tuple[str, ...], split_hash: str, config: dict,
                 cases: list[CaseInfo], images: np.ndarray, masks: np.ndarray,
                 warn: Callable[[str], None] | None = None, lock: bool = True):
        """fingerprint: the data's, or Prepared.fingerprints; warn: told of each array found damaged or missing
        on reopening, and what was done about it; lock: take the cache's writer lock (every caller but
        torchrun's other ranks, which write under rank 0's). self.fingerprint is what explanation keys use."""
        self.root = Path(root)
        self.warn = warn or (lambda msg: None)
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"--cache: {self.root} is a file, not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MAPS_DIR).mkdir(exist_ok=True)
        self._held = ExitStack()  # the writer lock: one precompute a cache at a time (torchrun: rank 0's)
        if lock:
            self._held.enter_context(writer_lock(self.root, "precompute"))
        try:
            self._open(fingerprint, split_hash, config, cases, images, masks)
        except BaseException:
            self._held.close()
            raise
        self._maps: dict[int, np.memmap] = {}

    def _open(self, fingerprints: str | tuple[str, ...], split_hash: str, config: dict, cases: list[CaseInfo],
              images: np.ndarray, masks: np.ndarray) -> None:
        fingerprint = as_fingerprints(fingerprints)[0]
        db = self.root / DB_NAME
        self.con = open_db(db, readonly=False)
        try:
            self.con.execute("PRAGMA busy_timeout=60000")  # torchrun ranks share one database
            tables = table_names(self.con)
            if tables and "meta" not in tables:  # someone's own database: never add our tables to it
                raise sqlite3.DatabaseError(f"it holds other tables ({', '.join(sorted(tables)[:3])}) and no meta")
            self.con.executescript(DDL)
            meta = {r["key"]: r["value"] for r in self.con.execute("SELECT key, value FROM meta")}
            rows = self.con.execute("SELECT EXISTS (SELECT 1 FROM cases) OR EXISTS (SELECT 1 FROM models)").fetchone()[0]
        except sqlite3.OperationalError:
            self.con.close()
            raise
        except sqlite3.DatabaseError as exc:  # a truncated database, or one with another table of that name
            self.con.close()
            raise CacheError(f"{db}: {DAMAGED_DB} ({exc}); use a new --cache folder") from None
        if not meta and rows:  # cases or models without the fingerprint that says which data they are
            self.con.close()
            raise CacheError(f"{db}: {DAMAGED_DB} (it has cases but no meta table rows); use a new --cache folder")
        if meta:
            if other_schema(meta, self.root):
                raise other_schema(meta, self.root)
            if why := other_cache(meta, fingerprints, split_hash):
                raise CacheError(f"{self.root}: cache was built from {why}; use a new --cache folder")
            self.fingerprint = key_fingerprint(meta)
            _add_columns(self.con)  # only once it is known to be of this schema and these data
            if meta.get("fingerprint") != fingerprint and meta.get("data_fingerprint") != fingerprint:
                with self.con:  # built under an earlier name of these data: today's matches from now on
                    note_data_fingerprint(self.con, fingerprint)
            self._repair(images, masks)
            with self.con:  # patient pseudonyms may have been re-derived (keyed since 2026-11-27): store today's
                self.con.executemany("UPDATE cases SET patient=? WHERE case_id=? AND patient IS NOT ?",
                                     [(c.patient, c.case_id, c.patient) for c in cases])
        else:
            self._create(fingerprint, split_hash, cases, images, masks)
            self.fingerprint = fingerprint
        with self.con:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),))
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)", (_now(),))

    def _write_arrays(self, images, masks) -> None:
        for name, arr in ((IMAGES_NAME, images), (MASKS_NAME, masks)):
            self._save(name, arr)

    def _save(self, name: str, arr: np.ndarray) -> None:
        """One array file replaced whole: a reader keeps the old one mapped, a kill leaves one or the other."""
        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:  # a file object: np.save would add ".npy" to the temporary name
                np.save(f, arr.astype(np.uint8))
        replace_atomically(self.root / name, write, RESULTS_KEPT)

    def stored_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(masks.npy, has_mask of the cases table), as this cache holds them."""
        return np.load(self.root / MASKS_NAME, mmap_mode="r"), has_mask_column(self.con, self.n_cases)

    def explanations_by_size(self) -> list[tuple[int, int, float]]:
        """(expl_id, its model's input size, its tau) of every explanation in the cache."""
        rows = self.con.execute("SELECT e.expl_id, m.img_size, e.settings FROM explanations e "
                                "JOIN models m USING (model_id) ORDER BY e.expl_id").fetchall()
        return [(r[0], r[1], float(json.loads(r[2] or "{}").get("tau", 0.5))) for r in rows]

    def replace_masks(self, masks: np.ndarray, has_mask: np.ndarray,
                      metrics: list[tuple[int, np.ndarray, dict[str, np.ndarray]]]) -> None:
        """New lesion masks and the metrics recomputed with them, (expl_id, rows, values) each. The rows first,
        in one transaction, then masks.npy: a run killed between them finds the masks still changed and
        recomputes again, never new masks beside old metrics."""
        with self.con:
            for expl_id, idxs, values in metrics:
                self.put_metrics(expl_id, idxs, values)
            self.con.executemany("UPDATE cases SET has_mask=? WHERE idx=?",
                                 [(int(h), i) for i, h in enumerate(has_mask.tolist())])
        self._save(MASKS_NAME, masks)

    def _repair(self, images, masks) -> None:
        """A reopened cache's arrays, checked through their headers (no data read). Images or masks missing or
        damaged are written again, both, from the slices just loaded (the fingerprint says they are the same
        data); an explanation whose map file is missing or damaged is dropped with its metrics and suspects,
        so that this run computes it again. Nothing else is touched: flags and every other result stay."""
        n = self.n_cases
        bad_images = array_problem(self.root / IMAGES_NAME, n, np.uint8)
        problems = {IMAGES_NAME: bad_images, MASKS_NAME: masks_problem(self.root, n, images_ok=bad_images is None)}
        if any(problems.values()):
            if len(images) != n or len(masks) != n:
                raise CacheError(f"{self.root}: its images or masks are damaged and this run has {len(images)} "
                                 f"cases for its {n}; use a new --cache folder")
            self._write_arrays(images, masks)
            for name, problem in problems.items():
                if problem:
                    self.warn(f"{self.root / name}: {problem}; written again from the data")
        for r in self.con.execute("SELECT expl_id, map_file, map_h, map_w FROM explanations").fetchall():
            problem = (array_problem(map_path(self.root, r["map_file"]), n, np.float16, (r["map_h"], r["map_w"]))
                       if r["map_file"] else "no map file recorded")
            if problem:
                with self.con:
                    self._drop_explanation(r["expl_id"])
                if r["map_file"]:
                    map_path(self.root, r["map_file"]).unlink(missing_ok=True)
                self.warn(f"{self.root / (r['map_file'] or MAPS_DIR)}: {problem}; its maps and metrics are "
                          f"computed again")

    def _drop_explanation(self, expl_id: int) -> None:
        """One explanation's rows, inside the caller's transaction; the caller removes its map file after the
        commit, so that a reader never sees a row whose file is gone."""
        self.con.execute("DELETE FROM metrics WHERE expl_id=?", (expl_id,))
        self.con.execute("DELETE FROM suspects WHERE expl_id=?", (expl_id,))
        self.con.execute("DELETE FROM explanations WHERE expl_id=?", (expl_id,))

    def _create(self, fingerprint, split_hash, cases, images, masks) -> None:
        # Arrays first, rows second: a cache with rows always has its images.
        self._write_arrays(images, masks)
        with self.con:
            self.con.executemany("INSERT INTO cases VALUES (?,?,?,?,?,?)",
                                 [(i, c.case_id, c.label, c.patient, int(c.has_mask), c.shortcut) for i, c in enumerate(cases)])
            self.con.executemany("INSERT INTO meta VALUES (?,?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("fingerprint", fingerprint),
                ("split_hash", split_hash), ("created", _now())])

    def add_model(self, info: ModelInfo, checkpoint_hash: str, card: dict, trained_elsewhere: str | None = None) -> None:
        """Register a model; if its checkpoint changed, everything computed from the old one is dropped. A reference
        seed takes the place of any other seed of its name that was one (one column per name). trained_elsewhere:
        the other data or split it was trained on, in words, where --force used it anyway (None: these)."""
        row = self.con.execute("SELECT checkpoint_hash FROM models WHERE model_id=?", (info.model_id,)).fetchone()
        gone: list[str] = []
        with self.con:
            if row is not None and row["checkpoint_hash"] != checkpoint_hash:
                gone = self._drop_model_results(info.model_id)
            if info.is_ref:
                self.con.execute("UPDATE models SET is_ref=0 WHERE name=? AND model_id!=?", (info.name, info.model_id))
            self.con.execute("INSERT OR REPLACE INTO models (model_id, name, arch, family, describe, seed, is_ref, "
                             "img_size, checkpoint_hash, card, trained_elsewhere) VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
                info.model_id, info.name, info.arch, info.family, info.describe, info.seed, int(info.is_ref),
                info.img_size, checkpoint_hash, json.dumps(card, sort_keys=True), trained_elsewhere))
        for name in gone:  # after the commit, as _drop_explanation asks
            map_path(self.root, name).unlink(missing_ok=True)

    def _drop_model_results(self, model_id: str) -> list[str]:
        """Everything computed from a model, inside the caller's transaction; returns the map files to remove
        once it commits."""
        rows = self.con.execute("SELECT expl_id, map_file FROM explanations WHERE model_id=?", (model_id,)).fetchall()
        for r in rows:
            self._drop_explanation(r["expl_id"])
        self.con.execute("DELETE FROM predictions WHERE model_id=?", (model_id,))
        self.con.execute("DELETE FROM evaluation WHERE model_id=?", (model_id,))
        self.con.execute("DELETE FROM sanity WHERE model_id=?", (model_id,))
        return [r["map_file"] for r in rows if r["map_file"]]

    def explanation(self, model_id: str, method: str, layer: str, key: str, shape: tuple[int, int], settings: dict) -> int:
        """The id of the explanation with this key, created (with its map array) if new."""
        row = self.con.execute("SELECT expl_id FROM explanations WHERE key=?", (key,)).fetchone()
        if row is not None:
            return int(row["expl_id"])
        stale = self.con.execute("SELECT expl_id, map_file FROM explanations WHERE model_id=? AND method=?",
                                 (model_id, method)).fetchall()
        with self.con:
            # Same model and method with other settings is stale: replace it rather than show it.
            for old in stale:
                self._drop_explanation(old["expl_id"])
            cur = self.con.execute(
                "INSERT INTO explanations (model_id, method, layer, key, map_file, map_h, map_w, settings) VALUES (?,?,?,?,?,?,?,?)",
                (model_id, method, layer, key, "", shape[0], shape[1], json.dumps(settings, sort_keys=True)))
            expl_id = int(cur.lastrowid)
            # The key in the name: SQLite may hand a dropped explanation's id out again, and a reader may still
            # have the old file mapped; a new name never rewrites a file in place.
            tag = hashlib.sha1(key.encode()).hexdigest()[:12]  # keys are hashes, but any text is a key
            map_file = f"{MAPS_DIR}/{expl_id}-{tag}.npy"
            n = self.n_cases

            replace_atomically(self.root / map_file, lambda tmp: _nan_maps(tmp, n, shape), RESULTS_KEPT)
            self.con.execute("UPDATE explanations SET map_file=? WHERE expl_id=?", (map_file, expl_id))
        for old in stale:
            if old["map_file"] and old["map_file"] != map_file:
                map_path(self.root, old["map_file"]).unlink(missing_ok=True)
        return expl_id

    @property
    def n_cases(self) -> int:
        return int(self.con.execute("SELECT COUNT(*) FROM cases").fetchone()[0])

    def reference_seeds(self, method: str) -> list[tuple[str, int]]:
        """(name, seed) of the reference seeds the cache holds maps of this method for."""
        return [(r[0], int(r[1])) for r in self.con.execute(
            "SELECT m.name, m.seed FROM models m JOIN explanations e USING (model_id) WHERE m.is_ref=1 AND e.method=?",
            (method,))]

    def done(self, expl_id: int) -> set[int]:
        """Cases whose map and metrics for this explanation are already stored (Faith is always among them)."""
        return {r[0] for r in self.con.execute("SELECT idx FROM metrics WHERE expl_id=? AND name='faith'", (expl_id,))}

    def _map(self, expl_id: int) -> np.memmap:
        if expl_id not in self._maps:
            f = self.con.execute("SELECT map_file FROM explanations WHERE expl_id=?", (expl_id,)).fetchone()["map_file"]
            self._maps[expl_id] = np.load(map_path(self.root, f), mmap_mode="r+")
        return self._maps[expl_id]

    def write_batch(self, expl_id: int, model_id: str, idxs: np.ndarray, maps: np.ndarray,
                    preds: np.ndarray, probs: np.ndarray, metrics: dict[str, np.ndarray],
                    suspects: list[tuple[int, str, float, str]] = ()) -> None:
        """One batch: maps flushed to disk, then predictions, metrics and suspects in one transaction."""
        arr = self._map(expl_id)
        arr[idxs] = maps.astype(np.float16)
        arr.flush()
        with self.con:
            self.con.executemany("INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?)", [
                (model_id, int(i), int(p), float(pr[p]), *map(float, pr[:3])) for i, p, pr in zip(idxs, preds, probs)])
            self.put_metrics(expl_id, idxs, metrics)
            self.con.execute(f"DELETE FROM suspects WHERE expl_id=? AND idx IN ({','.join(map(str, map(int, idxs)))})",
                             (expl_id,))
            self.con.executemany("INSERT OR REPLACE INTO suspects VALUES (?,?,?,?,?,?)",
                                 [(expl_id, model_id, int(i), rule, float(v), reason) for i, rule, v, reason in suspects])

    def set_metrics(self, expl_id: int, idxs: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        with self.con:
            self.put_metrics(expl_id, idxs, metrics)

    def put_metrics(self, expl_id, idxs, metrics: dict[str, np.ndarray]) -> None:
        """Metric rows inside the caller's transaction (set_metrics opens its own)."""
        idxs = np.asarray(idxs, dtype=np.int64).tolist()
        self.con.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?)",
                             ((expl_id, i, name, v) for name, values in metrics.items()
                              for i, v in zip(idxs, _sql_floats(values))))

    def read_maps(self, expl_id: int) -> np.ndarray:
        return np.asarray(self._map(expl_id), dtype=np.float32)

    def metric_values(self, expl_id: int, names: tuple[str, ...]) -> dict[int, dict[str, float | None]]:
        """Stored metrics of one explanation by case: {idx: {name: value}}."""
        out: dict[int, dict[str, float | None]] = {}
        rows = self.con.execute(f"SELECT idx, name, value FROM metrics WHERE expl_id=? AND name IN ({','.join('?' * len(names))})",
                                (expl_id, *names))
        for idx, name, value in rows:
            out.setdefault(idx, {})[name] = value
        return out

    def replace_suspects(self, expl_id: int, model_id: str, rows: list[tuple[int, str, float, str]]) -> None:
        with self.con:
            self.con.execute("DELETE FROM suspects WHERE expl_id=?", (expl_id,))
            self.con.executemany("INSERT INTO suspects VALUES (?,?,?,?,?,?)",
                                 [(expl_id, model_id, int(i), rule, float(v), reason) for i, rule, v, reason in rows])

    def write_sanity(self, model_id: str, method: str, stages: list[dict], n_cases: int) -> None:
        with self.con:
            self.con.execute("DELETE FROM sanity WHERE model_id=? AND method=?", (model_id, method))
            self.con.executemany("INSERT INTO sanity VALUES (?,?,?,?,?,?)", [
                (model_id, method, s["stage"], s["randomised"], s["spearman"], n_cases) for s in stages])

    def has_sanity(self, model_id: str, method: str) -> bool:
        return self.con.execute("SELECT 1 FROM sanity WHERE model_id=? AND method=?", (model_id, method)).fetchone() is not None

    def has_evaluation(self, model_id: str) -> bool:
        return self.con.execute("SELECT 1 FROM evaluation WHERE model_id=?", (model_id,)).fetchone() is not None

    def write_evaluation(self, model_id: str, body: dict) -> None:
        with self.con:
            self.con.execute("INSERT OR REPLACE INTO evaluation VALUES (?,?)", (model_id, json.dumps(body, sort_keys=True)))

    def close(self) -> None:
        for arr in self._maps.values():
            arr.flush()
        self._maps.clear()
        self.con.close()
        self._held.close()
