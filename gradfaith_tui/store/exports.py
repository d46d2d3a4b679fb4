"""Evaluation results as JSON and CSV files beside the cache database, for scripts and spreadsheets."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path
from typing import Callable

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.errors import CacheError
from gradfaith_tui.models.card import replace_atomically  # torch-free
from gradfaith_tui.store.files import (DAMAGED_DB, RESULTS_KEPT, connect_readonly, note_data_fingerprint, other_cache,
                                       other_schema)
from gradfaith_tui.store.keys import checkpoint_identity
from gradfaith_tui.store.schema import DB_NAME

TABLE1_COLUMNS = ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")


EVALUATION_NAME = "evaluation.json"


def evaluation_folder(cache: Path, make: bool = False) -> Path:
    """--cache as a folder for the evaluation files: checked before any model runs, so that a file in its
    place, or a folder that cannot be made or written, is said at once rather than after the evaluation; made (make=True)
    only when there is something to write, so a failed evaluate leaves no empty folder behind."""
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise CacheError(f"--cache: {cache} is a file, not a folder")
    if make:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"--cache: cannot make the folder {cache} ({exc.strerror or exc})") from None
    elif not cache.exists():
        parent = next(p for p in cache.absolute().parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise CacheError(f"--cache: cannot make the folder {cache} ({parent} is not a folder this user can write)")
    elif not os.access(cache, os.W_OK | os.X_OK):
        raise CacheError(f"--cache: cannot write into {cache} (permission denied); pass a folder you can write")
    return cache


def cache_meta(cache: Path) -> dict | None:
    """The meta rows of an audit cache (what data and split it was built from); None where the folder has none."""
    db = Path(cache) / DB_NAME
    if not db.is_file():
        return None
    try:
        con = connect_readonly(db)
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"{db}: {DAMAGED_DB} ({exc}); use a new --cache folder") from None
    if meta and other_schema(meta, db):  # its evaluation table may mean something else there: left alone
        raise other_schema(meta, db)
    return meta


def check_evaluation_data(cache: Path, data: list[tuple[tuple[str, ...], str]]) -> None:
    """Refuse to put results of other data, or of another split, beside an audit cache: data holds the
    (Prepared.fingerprints, split hash) of each split the evaluation will use."""
    have = cache_meta(cache)
    if have is None:
        return
    for fingerprints, split in data:
        if why := other_cache(have, fingerprints, split):
            raise CacheError(f"{cache}: cache was built from {why}; use a new --cache folder")


def store_evaluation(cache: Path, bodies: dict[str, dict], warn: Callable[[str], None],
                     fingerprint: str | None = None) -> None:
    """Where the folder holds an audit cache, put these results in its database too, as precompute does, so
    that the report and a later precompute (which keeps a model's stored Table I unless it recomputed that
    model) show what `evaluate` measured; only for the checkpoints the cache holds (same weights, same input
    size), as the report sets Table I beside their maps. The caller holds the folder's writer lock, and has
    checked the cache is of these data (check_evaluation_data): fingerprint, today's, is noted where the cache
    has it under an earlier name (as CacheWriter notes it)."""
    db = Path(cache) / DB_NAME
    if not db.is_file():
        return
    try:
        con = sqlite3.connect(db, timeout=30)
        try:
            held = dict(con.execute("SELECT model_id, checkpoint_hash FROM models").fetchall())
            fits = {m: b for m, b in bodies.items() if held.get(m) is not None and held[m] == checkpoint_identity(b)}
            with con:
                con.executemany("INSERT OR REPLACE INTO evaluation VALUES (?,?)",
                                [(m, json.dumps(b, sort_keys=True)) for m, b in fits.items()])
                if fingerprint is not None:
                    note_data_fingerprint(con, fingerprint)
        finally:
            con.close()
    except sqlite3.OperationalError as exc:  # read-only, locked, no room: the files beside it still get written
        warn(f"{db}: could not take these results ({exc}); the report keeps the Table I precompute stored")
        return
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"{db}: {DAMAGED_DB} ({exc}); use a new --cache folder") from None
    for m in bodies:
        if m not in fits:
            warn(f"{m}: {'another checkpoint than the one' if m in held else 'not a model'} this audit cache holds; "
                 f"its results go to {EVALUATION_NAME} and the CSVs only, not to the cache's report "
                 f"(run precompute with these checkpoints to audit them)")


def _stored_bodies(path: Path) -> dict[str, dict]:
    """The results already in evaluation.json (nothing where it is missing or unreadable: it is derived data)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) and all(isinstance(v, dict) for v in old.values()) else {}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Written beside, then renamed: a kill mid-write leaves the old file whole, never an empty one."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    replace_atomically(path, write, RESULTS_KEPT)


def _rounded(v: float | None) -> float | str:
    return "" if v is None else round(v, 4)  # a value that does not exist (0/0) is an empty cell


def write_evaluation_files(cache: Path, bodies: dict[str, dict]) -> list[Path]:
    """evaluation.json, table1.csv and confusion.csv: these models' results merged into those already there
    (another model's entry is kept; this one's replaced), so evaluating one model never drops the others."""
    cache = evaluation_folder(cache, make=True)
    out = cache / EVALUATION_NAME
    bodies = {**_stored_bodies(out), **bodies}
    replace_atomically(out, lambda tmp: tmp.write_text(json.dumps(bodies, indent=2, sort_keys=True)), RESULTS_KEPT)
    t1, cm = cache / "table1.csv", cache / "confusion.csv"
    table1_rows = []
    for model, body in bodies.items():
        timing = body.get("timing", {})
        table1_rows.append([model, "macro", *(_rounded(body["macro"].get(k)) for k in TABLE1_COLUMNS),
                            timing.get("latency_ms", ""), timing.get("throughput_ips", ""), timing.get("device", "")])
        table1_rows += [[model, cls, *(_rounded(vals.get(k)) for k in TABLE1_COLUMNS), "", "", ""]
                        for cls, vals in body["per_class"].items()]
    _write_csv(t1, ["model", "class", *TABLE1_COLUMNS, "latency_ms", "throughput_ips", "device"], table1_rows)
    _write_csv(cm, ["model", "true", *(f"pred_{c}" for c in CLASS_NAMES)],
               [[model, name, *row] for model, body in bodies.items() for name, row in zip(CLASS_NAMES, body["confusion"])])
    return [out, t1, cm]
