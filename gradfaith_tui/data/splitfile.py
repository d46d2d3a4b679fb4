"""The saved split manifest: written once next to the data, reused by train, evaluate and precompute.

`<data>/splits/split-seed<k>.csv` (for a CSV given as --data: `splits/<csv name>-split-seed<k>.csv`
beside it) with the columns case_id,label,patient,split. If the data folder is read-only, the file goes
to `$XDG_CACHE_HOME/gradfaith-tui/splits/<hash of the data path>/` (default `~/.cache/...`).
When the data no longer matches a saved split, that is an error, never a silent re-split:
re-split with `gradfaith-tui data split DATA --force` (or delete the file) and retrain.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Callable

from gradfaith_tui.data.dataset import Dataset
from gradfaith_tui.data.splits import split_hash
from gradfaith_tui.errors import DataError

COLUMNS = ("case_id", "label", "patient", "split")


def _name(ds: Dataset, seed: int) -> str:
    custom = ds.manifest is not None and ds.manifest.name != "manifest.csv"
    return f"{ds.manifest.stem}-split-seed{seed}.csv" if custom else f"split-seed{seed}.csv"


def fallback_dir(ds: Dataset) -> Path:
    return fallback_dir_of(ds.root)


def fallback_dir_of(root: Path) -> Path:
    """Where a dataset whose folder is read-only keeps its splits (and its pseudonym key)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return base / "gradfaith-tui" / "splits" / key


def candidates(ds: Dataset, seed: int) -> list[Path]:
    """Where a saved split may be, preferred first."""
    return [ds.root / "splits" / _name(ds, seed), fallback_dir(ds) / _name(ds, seed)]


def find_saved(ds: Dataset, seed: int) -> Path | None:
    for p in candidates(ds, seed):
        _not_a_folder(p)
        if p.is_file():
            return p
    return None


def _not_a_folder(path: Path) -> None:
    """A folder where the split file goes would be passed over, and the split saved elsewhere as if the data's
    folder were read-only."""
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: a folder (or other non-file) where the saved split goes; move it away")


def read_split(path: Path) -> list[dict]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the saved split ({exc.__class__.__name__})") from None
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise DataError(f"{path}: not a split manifest (needs the columns {','.join(COLUMNS)})")
    if not rows:  # else read as "every file added since", which it is not
        raise DataError(f"{path}: the saved split is empty (no cases); delete it, or restore it from a backup, "
                        "and retrain what was trained on it")
    return rows


def verify(ds: Dataset, path: Path, rows: list[dict], warn: Callable[[str], None] = lambda msg: None) -> dict[str, str]:
    """The saved assignment, if it still describes exactly this data; otherwise a DataError saying what changed.

    A split saved without patient ids where the slices now have them (DICOM slices take theirs from the
    PatientID tag; splits saved before that did not) is kept, so trained models stay valid, with a warning:
    it may put one patient in two splits. So is one whose DICOM pseudonyms were derived otherwise (the older
    unkeyed SHA-1, or another key) as long as they group the slices the same way, with a warning that
    unkeyed ones can be reversed by trying IDs."""
    saved = {r["case_id"]: r for r in rows}
    now = {s.case_id: s for s in ds.samples}
    common = now.keys() & saved.keys()
    gained = sorted(k for k in common if not saved[k]["patient"] and now[k].patient)
    rederived = _rederived(saved, now, common)
    parts = _differences(saved, now, rederived)
    if parts:
        raise DataError(f"{path}: the data no longer matches this saved split: {'; '.join(parts)}; "
                        f"re-split with `gradfaith-tui data split {ds.manifest or ds.root} --force` "
                        "(or delete the file) and retrain")
    bad = sorted({r["split"] for r in rows} - {"train", "val", "test"})
    if bad:
        raise DataError(f"{path}: unknown split name '{bad[0]}' (use train, val, test)")
    if gained:
        warn(f"{path}: saved by slice, before {len(gained)} slices had patient ids (e.g. {gained[0]}), so one "
             f"patient's slices may sit in train and test; re-split with `gradfaith-tui data split "
             f"{ds.manifest or ds.root} --force` and retrain")
    if rederived:
        warn(f"{path}: holds older patient pseudonyms ({len(rederived)} slices, e.g. {sorted(rederived)[0]}), "
             "unkeyed hashes of PatientID that can be reversed by trying IDs (or made with another key); "
             "they group the slices as now, so the split is kept; `gradfaith-tui data split "
             f"{ds.manifest or ds.root} --force` (then retrain) replaces them")
    return {k: r["split"] for k, r in saved.items()}


def _differences(saved: dict[str, dict], now: dict, rederived: set[str]) -> list[str]:
    """Files added, removed, or with another label or patient, in words ("1 removed (e.g. x.jpg)")."""
    common = now.keys() & saved.keys()
    added = sorted(now.keys() - saved.keys())
    removed = sorted(saved.keys() - now.keys())
    relabelled = sorted(k for k in common
                        if saved[k]["label"] != str(now[k].label)
                        or (saved[k]["patient"] != (now[k].patient or "") and saved[k]["patient"]
                            and k not in rederived))
    return [f"{len(v)} {what} (e.g. {v[0]})" for v, what in
            ((added, "added"), (removed, "removed"), (relabelled, "with another label or patient")) if v]


def changes_since_saved(ds: Dataset, seed: int, trained_split: str | None = None) -> str:
    """What changed in the data since its split was saved, in words for an error about other data ("" where no
    split is saved, it cannot be read, or it is not the split the model was trained on: trained_split, the
    card's split hash, names that one)."""
    path = find_saved(ds, seed)
    try:
        rows = read_split(path) if path is not None else None
    except DataError:
        rows = None
    if not rows or (trained_split is not None and split_hash({r["case_id"]: r["split"] for r in rows}) != trained_split):
        return ""  # saved again since (`data split --force`): it cannot say what the model saw
    saved, now = {r["case_id"]: r for r in rows}, {s.case_id: s for s in ds.samples}
    parts = _differences(saved, now, _rederived(saved, now, now.keys() & saved.keys()))
    if not parts:
        boxes = (" (or a CSV lesion box moved, for a model made before 2026-11-28, when boxes were part of the "
                 "fingerprint: with the boxes it was trained with back in place, any command brings it up to date)"
                 if any(s.boxes for s in ds.samples) else "")
        return (f"; the files are those its saved split {path} lists, so a file's content or the DICOM --window "
                f"differs{boxes}")
    return f"; since its split {path} was saved: {'; '.join(parts)}"


def _rederived(saved: dict[str, dict], now: dict, common: set[str]) -> set[str]:
    """Slices whose saved DICOM pseudonym differs from today's while the two name the same groups: every
    saved pseudonym maps to one current one and back. Where they do not, the patients really changed."""
    prefix = "dcm-"
    pairs = {k: (saved[k]["patient"], now[k].patient) for k in common
             if saved[k]["patient"].startswith(prefix) and (now[k].patient or "").startswith(prefix)}
    forward: dict[str, set[str]] = {}
    backward: dict[str, set[str]] = {}
    for old, new in pairs.values():
        forward.setdefault(old, set()).add(new)
        backward.setdefault(new, set()).add(old)
    return {k for k, (old, new) in pairs.items()
            if old != new and len(forward[old]) == 1 and len(backward[new]) == 1}


def write_split(ds: Dataset, seed: int, assignment: dict[str, str], warn: Callable[[str], None]) -> Path:
    """Write atomically next to the data, or in the fallback place when that is read-only (and say so)."""
    by_id = {s.case_id: s for s in ds.samples}
    first, fallback = candidates(ds, seed)
    for i, target in enumerate((first, fallback)):
        _not_a_folder(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            with tmp.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(COLUMNS)
                for cid in sorted(assignment):
                    w.writerow((cid, by_id[cid].label, by_id[cid].patient or "", assignment[cid]))
            tmp.replace(target)
        except OSError as exc:
            if i == 1:
                raise DataError(f"{target}: cannot save the split ({exc.strerror or exc})") from None
            continue
        if i == 1:
            warn(f"{first.parent}: not writable; split saved to {target}")
        return target
    raise AssertionError("unreachable")
