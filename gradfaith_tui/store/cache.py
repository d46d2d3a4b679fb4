"""Writer (atomic, resumable) and reader (sorted pages, lazy maps) of an audit cache directory.

Layout: audit.sqlite (WAL) holds every row; images.npy/masks.npy hold the test slices after the
resize policy; maps/<expl_id>-<tag>.npy holds one float16 array (n_cases, h, w) per explanation (a new tag whenever an
explanation is replaced). A map row
is flushed to disk before the transaction that records its metrics commits, so a reader (or a
resumed run) only ever trusts rows whose maps are complete.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np

from gradfaith_tui.config import PAPER_ARCHS
from gradfaith_tui.errors import CacheError
from gradfaith_tui.locks import writer_lock
from gradfaith_tui.models.card import replace_atomically  # torch-free
from gradfaith_tui.store.schema import DB_NAME, DDL, IMAGES_NAME, MAPS_DIR, MASKS_NAME, SCHEMA_VERSION


def _sql_floats(values) -> list:
    """Floats with NaN and inf as None (SQL NULL), converted in bulk rather than one np.isfinite per value."""
    v = np.asarray(values, dtype=np.float64)
    out = v.astype(object)
    out[~np.isfinite(v)] = None
    return out.tolist()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ro_uri(path: Path, immutable: bool = False) -> str:
    return f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (rows as tuples) that also works in a folder this user cannot write.

    A WAL database is read through its -shm file, which SQLite creates beside it; after a clean close
    there is none, and in a read-only folder (a shared cache owned by another user) it cannot be made:
    the first read fails with "attempt to write a readonly database". Then the file is opened as
    immutable, which needs no -shm. That is safe only because nothing can be writing there (no -wal
    beside it, and no writer could create one); with a -wal present the error stands.
    """
    path = Path(path)
    con = sqlite3.connect(_ro_uri(path), uri=True, check_same_thread=False)
    try:
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        con.close()
        text = str(exc)
        if not ("readonly" in text or "unable to open" in text) or Path(f"{path}-wal").exists():
            raise
        con = sqlite3.connect(_ro_uri(path, immutable=True), uri=True, check_same_thread=False)
    return con


DAMAGED_DB = "not an audit cache, or damaged"
RESULTS_KEPT = "what precompute stored is kept: free some space and rerun"  # a full disk, said after the file


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            con = connect_readonly(path)
        else:
            con = sqlite3.connect(path, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError as exc:  # a folder in its place, no permission to write there...
        raise CacheError(f"{path}: cannot open the cache's database ({exc})") from None
    except sqlite3.DatabaseError as exc:  # another file in its place, or a truncated or overwritten database
        raise CacheError(f"{path}: {DAMAGED_DB} ({exc}); use a new --cache folder") from None
    con.row_factory = sqlite3.Row
    return con


def array_problem(path: Path, n: int, dtype, shape: tuple[int, ...] | None = None) -> str | None:
    """Why an array file of the cache cannot be used, or None where it can: it is read through its header and
    memory-mapped (no data is read), so a missing, truncated or overwritten file, or one of another shape
    (n cases first, then `shape` where given) or dtype, is found when the cache is opened."""
    if not path.is_file():
        return "missing"
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:  # truncated, overwritten, pickled data...
        return f"unreadable: {str(exc).split('. ')[0].rstrip('.')}"
    if not isinstance(arr, np.ndarray):  # an .npz archive under the name
        return "not a .npy array"
    try:
        if arr.ndim != 3 or arr.shape[0] != n or (shape is not None and tuple(arr.shape[1:]) != tuple(shape)):
            want = f"({n}, {', '.join(map(str, shape))})" if shape is not None else f"3 dimensions, {n} first"
            return f"shape {tuple(arr.shape)}, expected {want}"
        if arr.dtype != np.dtype(dtype):
            return f"dtype {arr.dtype}, expected {np.dtype(dtype)}"
        return None
    finally:
        del arr


def masks_problem(root: Path, n: int, images_ok: bool) -> str | None:
    """masks.npy as array_problem checks it, and of the shape of images.npy where that one is readable
    (images_ok: the caller's array_problem of images.npy found nothing)."""
    problem = array_problem(root / MASKS_NAME, n, np.uint8)
    if problem is None and images_ok:
        if np.load(root / MASKS_NAME, mmap_mode="r").shape != np.load(root / IMAGES_NAME, mmap_mode="r").shape:
            problem = "not the shape of images.npy"
    return problem


def _schema(meta: dict) -> int | None:
    """The stored schema version, or None where it is missing or not a number (a damaged or foreign database)."""
    try:
        return int(meta["schema_version"])
    except (KeyError, TypeError, ValueError):
        return None


def _schema_text(meta: dict) -> str:
    return f"v{meta['schema_version']}" if _schema(meta) is not None else f"version unknown ({meta.get('schema_version')!r})"


def other_schema(meta: dict, where: Path, does: str = "writes") -> CacheError | None:
    """The error for a cache of another schema version than this tool's, or None where it is this one's."""
    if _schema(meta) == SCHEMA_VERSION:
        return None
    newer = (_schema(meta) or 0) > SCHEMA_VERSION
    return CacheError(f"{where}: cache schema {_schema_text(meta)}, this tool {does} v{SCHEMA_VERSION}; "
                      + (f"upgrade gradfaith-tui to {'read' if does == 'reads' else 'use'} it" if newer else
                         "build it again with `gradfaith-tui precompute` into a new --cache folder"))


@dataclass(frozen=True)
class CaseInfo:
    case_id: str
    label: int | None
    patient: str | None
    has_mask: bool
    shortcut: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    name: str
    arch: str
    family: str
    describe: str
    seed: int
    is_ref: bool
    img_size: int


@dataclass(frozen=True)
class Column:
    """One model shown in the explorer: the reference seed of a name, with its explanation."""

    model: ModelInfo
    expl_id: int | None
    method: str


@dataclass
class ModelResult:
    pred: int | None = None
    confidence: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class CaseRow:
    idx: int
    case_id: str
    label: int | None
    patient: str | None
    has_mask: bool
    shortcut: int | None
    results: dict[str, ModelResult]  # by model name

    def worst(self, metric: str) -> float | None:
        vals = [r.metrics.get(metric) for r in self.results.values()]
        vals = [v for v in vals if v is not None]
        return min(vals) if vals else None

    def n_wrong(self) -> int:
        return sum(r.pred is not None and self.label is not None and r.pred != self.label for r in self.results.values())


def model_order(m: ModelInfo) -> tuple:
    """The paper's column order (ResNet-50 ... ViT-B/16), then others by name; seeds ascending.

    Stable whatever order the models were registered in, so M1..M5 mean the same in every view.
    """
    fam = PAPER_ARCHS.index(m.family) if m.family in PAPER_ARCHS else len(PAPER_ARCHS)
    return (fam, m.name, m.seed)


_MAP_NAME = re.compile(r"maps/[A-Za-z0-9_-]+\.npy")


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


def _one_reference_each(models: list[ModelInfo]) -> list[ModelInfo]:
    """The lowest seed marked reference of each name is its reference: a cache written before a run of other seeds
    alone stopped marking a second one (precompute --seeds 1 on a cache holding seed 0) shows each name once."""
    refs: dict[str, int] = {}
    for m in models:
        if m.is_ref:
            refs[m.name] = min(refs.get(m.name, m.seed), m.seed)
    return [replace(m, is_ref=m.is_ref and refs[m.name] == m.seed) for m in models]


def map_path(root: Path, name: str) -> Path:
    """A map file the database names, which must lie in the cache's maps folder: a copied or crafted cache
    must not make precompute's repair delete, or a reader open, a file elsewhere."""
    if not _MAP_NAME.fullmatch(name or ""):
        raise CacheError(f"{Path(root) / DB_NAME}: names a map file outside its maps folder ('{name}'); "
                         "this is not a cache this tool wrote; build it again into a new --cache folder")
    return Path(root) / name


class CacheWriter:
    """Creates or reopens a cache for one dataset and test split; refuses one made from other data."""

    def __init__(self, root: Path, fingerprint: str, split_hash: str, config: dict,
                 cases: list[CaseInfo], images: np.ndarray, masks: np.ndarray,
                 warn: Callable[[str], None] | None = None, lock: bool = True):
        """warn: told of each array found damaged or missing on reopening, and what was done about it; lock:
        take the cache's writer lock (every caller but torchrun's other ranks, which write under rank 0's)."""
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

    def _open(self, fingerprint: str, split_hash: str, config: dict, cases: list[CaseInfo], images: np.ndarray,
              masks: np.ndarray) -> None:
        db = self.root / DB_NAME
        self.con = _connect(db, readonly=False)
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
            if meta.get("fingerprint") != fingerprint or meta.get("split_hash") != split_hash:
                raise CacheError(f"{self.root}: cache was built from other data or another split "
                                 f"(fingerprint {meta.get('fingerprint')}, now {fingerprint}); use a new --cache folder")
            self._repair(images, masks)
            with self.con:  # patient pseudonyms may have been re-derived (keyed since 2026-11-27): store today's
                self.con.executemany("UPDATE cases SET patient=? WHERE case_id=? AND patient IS NOT ?",
                                     [(c.patient, c.case_id, c.patient) for c in cases])
        else:
            self._create(fingerprint, split_hash, cases, images, masks)
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
        has = np.zeros(self.n_cases, bool)
        for idx, h in self.con.execute("SELECT idx, has_mask FROM cases"):
            has[idx] = bool(h)
        return np.load(self.root / MASKS_NAME, mmap_mode="r"), has

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

    def add_model(self, info: ModelInfo, checkpoint_hash: str, card: dict) -> None:
        """Register a model; if its checkpoint changed, everything computed from the old one is dropped. A reference
        seed takes the place of any other seed of its name that was one (one column per name)."""
        row = self.con.execute("SELECT checkpoint_hash FROM models WHERE model_id=?", (info.model_id,)).fetchone()
        gone: list[str] = []
        with self.con:
            if row is not None and row["checkpoint_hash"] != checkpoint_hash:
                gone = self._drop_model_results(info.model_id)
            if info.is_ref:
                self.con.execute("UPDATE models SET is_ref=0 WHERE name=? AND model_id!=?", (info.name, info.model_id))
            self.con.execute("INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?)", (
                info.model_id, info.name, info.arch, info.family, info.describe, info.seed, int(info.is_ref),
                info.img_size, checkpoint_hash, json.dumps(card, sort_keys=True)))
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

    def reference_seeds(self) -> list[tuple[str, int]]:
        """(name, seed) of the reference seeds the cache holds models of."""
        return [(r[0], int(r[1])) for r in self.con.execute("SELECT name, seed FROM models WHERE is_ref=1")]

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


def table_names(con: sqlite3.Connection) -> set[str]:
    """Table names: caches from earlier versions, or before a first flag, lack some."""
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def column_names(con: sqlite3.Connection, table: str) -> set[str]:
    """A table's columns: those of earlier versions lack some (flags before `viewed` and `replaces`)."""
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


class CacheReader:
    """Read-only view for the explorer and the report: rows on demand, maps from memory-mapped arrays."""

    def __init__(self, root: Path, method: str | None = None):
        """method: whose maps the columns show; None: Grad-CAM where the cache has it, else the method of its
        last precompute (a cache made with --method rollout, say), else the first it holds."""
        self.root = Path(root)
        db = self.root / DB_NAME
        if not db.is_file():
            raise CacheError(f"--cache: no audit cache at {self.root} (run `gradfaith-tui precompute` or `gradfaith-tui demo`)")
        self.con = _connect(db, readonly=True)
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
        self.methods = [r[0] for r in self.con.execute("SELECT DISTINCT method FROM explanations ORDER BY method")]
        if method is None:
            last = json.loads(meta.get("config", "{}")).get("method")
            method = next((m for m in ("gradcam", last) if m in self.methods), self.methods[0] if self.methods else "gradcam")
        elif self.methods and method not in self.methods:
            self.con.close()
            raise CacheError(f"--method: no {method} maps in {self.root} (it holds {', '.join(self.methods)})")
        self.method = method
        self.n_cases = int(self.con.execute("SELECT COUNT(*) FROM cases").fetchone()[0])
        self.models = _one_reference_each(sorted(
            (ModelInfo(r["model_id"], r["name"], r["arch"], r["family"], r["describe"], r["seed"], bool(r["is_ref"]),
                       r["img_size"]) for r in self.con.execute("SELECT * FROM models")), key=model_order))
        if self.n_cases == 0 or not self.models:
            self.con.close()
            raise CacheError(f"{self.root}: the cache is empty (no cases or no models); run `gradfaith-tui precompute`")
        expl = {r["model_id"]: r["expl_id"] for r in self.con.execute(
            "SELECT model_id, expl_id FROM explanations WHERE method=?", (method,))}
        self.columns = [Column(m, expl.get(m.model_id), method) for m in self.models if m.is_ref]
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
        self._images = None
        self._masks = None
        self._maps: dict[int, np.ndarray] = {}
        self._names: list[str] | None = None

    @property
    def config(self) -> dict:
        return json.loads(self.meta.get("config", "{}"))

    def completeness(self) -> tuple[int, int]:
        """(cases done, cases expected): done over the shown columns, where a map with its metrics is stored (as
        precompute counts it); expected over the models the cache lists now, which a running precompute may have
        added since this reader opened. Less than expected: precompute is still writing, or stopped early."""
        done = sum(int(self.con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id=? AND name='faith'",
                                        (c.expl_id,)).fetchone()[0]) for c in self.columns if c.expl_id is not None)
        listed = int(self.con.execute("SELECT COUNT(DISTINCT name) FROM models WHERE is_ref=1").fetchone()[0])
        return done, self.n_cases * max(listed, len(self.columns))

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

    def heatmap(self, expl_id: int, idx: int) -> np.ndarray | None:
        """One stored map as float32, or None where it is not computed yet."""
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
        m = np.asarray(self._maps[expl_id][idx], dtype=np.float32)
        return None if np.isnan(m).all() else m

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
