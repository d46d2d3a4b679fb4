"""The files of an audit cache: opening its database, checking its arrays and schema version, and where its
map files may lie. Shared by the writer (writer.py) and the reader (reader.py).

Layout: audit.sqlite (WAL) holds every row; images.npy/masks.npy hold the test slices after the resize policy;
maps/<expl_id>-<tag>.npy holds one float16 array (n_cases, h, w) per explanation (a new tag whenever an
explanation is replaced).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

import numpy as np

from gradfaith_tui.errors import CacheError
from gradfaith_tui.models.card import as_fingerprints  # torch-free
from gradfaith_tui.store.schema import DB_NAME, IMAGES_NAME, MASKS_NAME, SCHEMA_VERSION


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


def open_db(path: Path, readonly: bool) -> sqlite3.Connection:
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


_MAP_NAME = re.compile(r"maps/[A-Za-z0-9_-]+\.npy")


def of_this_data(meta: dict, fingerprints: str | tuple[str, ...]) -> bool:
    """Was the cache built from these data? fingerprints: today's first, then what earlier versions called
    them (Prepared.fingerprints). A cache made under an earlier name keeps it (its explanation keys hold it, see
    key_fingerprint) and notes today's as "data_fingerprint" the first time it matches."""
    fps = as_fingerprints(fingerprints)
    return meta.get("fingerprint") in fps or meta.get("data_fingerprint") == fps[0]


def other_cache(meta: dict, fingerprints: str | tuple[str, ...], split_hash: str) -> str | None:
    """What a cache was built from that is not these data or this split, in words with both values, so that a
    refusal never shows one fingerprint twice; None where it is of them."""
    fps = as_fingerprints(fingerprints)
    if not of_this_data(meta, fps):
        return f"other data (fingerprint {meta.get('fingerprint')}, now {fps[0]})"
    if meta.get("split_hash") != split_hash:
        return f"another split of these data (split {meta.get('split_hash')}, now {split_hash})"
    return None


def note_data_fingerprint(con: sqlite3.Connection, fingerprint: str) -> None:
    """Record today's fingerprint of the data beside the one a cache was built under, where they differ (see
    of_this_data). The caller has checked the cache is of these data, and commits."""
    con.execute("INSERT OR REPLACE INTO meta SELECT 'data_fingerprint', ? WHERE NOT EXISTS "
                "(SELECT 1 FROM meta WHERE key = 'fingerprint' AND value = ?)", (fingerprint, fingerprint))


def has_mask_column(con: sqlite3.Connection, n_cases: int) -> np.ndarray:
    """(n_cases,) bool: the cases with a lesion mask, as the cases table records them."""
    out = np.zeros(n_cases, bool)
    for idx, h in con.execute("SELECT idx, has_mask FROM cases"):
        out[idx] = bool(h)
    return out


def changed_masks(stored: np.ndarray, stored_has: np.ndarray, masks: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Rows whose lesion mask differs between the cache (masks.npy and the cases table) and the data now:
    what precompute recomputes from the stored maps, and what makes `demo` call a cache stale."""
    return np.flatnonzero((np.asarray(stored).astype(bool) != masks).any(axis=(1, 2)) | (stored_has != has))


def key_fingerprint(meta: dict) -> str:
    """The fingerprint a cache's explanation keys are made with: the one it was built under."""
    return meta["fingerprint"]


def map_path(root: Path, name: str) -> Path:
    """A map file the database names, which must lie in the cache's maps folder: a copied or crafted cache
    must not make precompute's repair delete, or a reader open, a file elsewhere."""
    if not _MAP_NAME.fullmatch(name or ""):
        raise CacheError(f"{Path(root) / DB_NAME}: names a map file outside its maps folder ('{name}'); "
                         "this is not a cache this tool wrote; build it again into a new --cache folder")
    return Path(root) / name


def table_names(con: sqlite3.Connection) -> set[str]:
    """Table names: caches from earlier versions, or before a first flag, lack some."""
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def column_names(con: sqlite3.Connection, table: str) -> set[str]:
    """A table's columns: those of earlier versions lack some (flags before `viewed` and `replaces`)."""
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
