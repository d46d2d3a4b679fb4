"""The two on-disk layouts: class folders (IQ-OTH/NCCD as published, or generic names) and CSV manifests."""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

from gradfaith_tui.config import CLASS_FOLDERS
from gradfaith_tui.data.dataset import Dataset, Sample, parse_label
from gradfaith_tui.data.imageio import DICOM_EXTS, PILLOW_EXTS, Box, dicom_patient, is_dicom, parse_window
from gradfaith_tui.data.pseudonym import Pseudonymizer
from gradfaith_tui.errors import DataError

IMAGE_EXTS = PILLOW_EXTS | DICOM_EXTS
UNLABELLED_FOLDERS = {"test cases"}  # IQ-OTH/NCCD ships unlabelled slices there
# IQ-OTH/NCCD names plus generic ones; matched case-insensitively. Class order stays Normal, Benign, Malignant.
CLASS_OF_FOLDER = {**CLASS_FOLDERS, "normal": 0, "benign": 1, "bengin": 1, "malignant": 2}
NOT_DATA = {"masks", "splits", "__macosx"}  # our side folders mirror the class folders; so does a Mac zip's
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
# files a data folder often holds beside its slices; any other name is opened to look for the DICOM magic
NOT_SLICES = {".csv", ".txt", ".md", ".json", ".xml", ".html", ".pdf", ".zip", ".gz", ".py", ".ipynb", ".db", ".ini"}


def is_image(p: Path) -> bool:
    # Hidden files are never slices: macOS leaves "._name.jpg" resource forks beside each copied image.
    return (not p.name.startswith(".") and p.is_file()
            and (p.suffix.lower() in IMAGE_EXTS or (p.suffix.lower() not in NOT_SLICES and is_dicom(p))))


def find_mask(base: Path, folder: str, stem: str, flat: bool = True) -> Path | None:
    """masks/<class folder>/<stem>.png, or flat masks/<stem>.png (flat=False: not for a slice in a sub-folder,
    whose name, IM0001 say, repeats in every patient's series)."""
    for cand in (base / "masks" / folder / f"{stem}.png", *([base / "masks" / f"{stem}.png"] if flat else [])):
        if cand.is_file():
            return cand
    return None


def _find_class_parent(root: Path, warnings: list[str]) -> tuple[Path, list[Path]]:
    """The folder holding the class folders, however deeply a copy nests it, and the other such folders below
    it (a copy's duplicate of itself), which are named in a warning and not used."""
    parents = set()
    onerror = lambda exc: warnings.append(f"{exc.filename}: cannot read folder ({exc.strerror})")  # noqa: E731
    for dirpath, dirnames, _ in os.walk(root, onerror=onerror):
        if len(Path(dirpath).relative_to(root).parts) > 3:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if d.lower() not in NOT_DATA and not d.startswith(".")]
        if any(d.lower() in CLASS_OF_FOLDER for d in dirnames):
            parents.add(Path(dirpath))
    if not parents:
        extra = f" ({warnings[0]})" if warnings else ""
        raise DataError(f"{root}: no class folders found (expected 'Normal cases', 'Bengin cases', "
                        f"'Malignant cases', or normal/benign/malignant, or a manifest.csv){extra}")
    # The shallowest set is the dataset: a Kaggle copy often holds a duplicate of itself one folder down.
    top = min(len(p.relative_to(root).parts) for p in parents)
    shallowest = sorted(p for p in parents if len(p.relative_to(root).parts) == top)
    if len(shallowest) > 1:
        raise DataError(f"{root}: several datasets found ({', '.join(str(p) for p in shallowest)}); pass one of them")
    parent = shallowest[0]
    others = [p for p in sorted(parents - {parent})  # inside a class folder: _class_files names it
              if not any(p.is_relative_to(parent / d) for d in _class_dirs(parent))]
    for p in others:
        warnings.append(f"{p}: another set of class folders, below {parent}; not used (pass it as DATA or "
                        "--data to use it instead)")
    return parent, others


def _class_dirs(parent: Path) -> list[str]:
    try:
        return [d.name for d in parent.iterdir() if d.is_dir() and d.name.lower() in CLASS_OF_FOLDER]
    except OSError:
        return []


def _left_above(root: Path, parent: Path, others: list[Path]) -> list[str]:
    """Images on the way from --data down to the class folders' folder, beside that path: not used, so named."""
    out, node = [], root
    for part in parent.relative_to(root).parts:
        try:
            entries = sorted(node.iterdir())
        except OSError:
            break
        for entry in entries:
            if entry.name == part or entry.name.startswith(".") or entry.name.lower() in NOT_DATA | UNLABELLED_FOLDERS:
                continue
            if any(o.is_relative_to(entry) for o in others):  # a nested copy: named as such already
                continue
            n = int(is_image(entry)) if entry.is_file() else _images_below(entry) if entry.is_dir() else 0
            if n:
                out.append(f"{entry}: outside {parent}, where the class folders are, so its {n} "
                           f"image{'s' * (n != 1)} {'are' if n != 1 else 'is'} not used")
        node = node / part
    return out


def _images_below(folder: Path, everything: bool = False) -> int:
    """Image files anywhere below a folder (hidden and, unless everything, side folders aside), for saying what
    is left out."""
    n = 0
    for dirpath, dirnames, files in _walk(folder):
        dirnames[:] = [d for d in dirnames if (everything or d.lower() not in NOT_DATA) and not d.startswith(".")]
        n += sum(is_image(Path(dirpath) / f) for f in files)  # extension-less DICOM too
    return n


def _walk(folder: Path, onerror=None):
    """os.walk into linked folders too (a patient's series linked in from elsewhere), each real folder once,
    so a link back up cannot loop."""
    seen: set[str] = set()
    for dirpath, dirnames, files in os.walk(folder, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        yield dirpath, dirnames, files


def _class_files(folder: Path, problems: list[str], warnings: list[str]) -> list[Path]:
    """The slices of one class folder, its sub-folders included (DICOM often comes as patient/series/file).
    A link to a missing file (a git-annex or DataLad copy not fetched) is a problem named, not a silent gap."""
    files: list[Path] = []
    unread: Counter[str] = Counter()
    onerror = lambda exc: problems.append(f"{exc.filename}: cannot read folder ({exc.strerror})")  # noqa: E731
    for dirpath, dirnames, names in _walk(folder, onerror):
        here = Path(dirpath)
        for d in [d for d in dirnames if d.lower() in CLASS_OF_FOLDER]:
            warnings.append(f"{here / d}: a class folder inside the class folder {folder.name}; not used")
        for d in [d for d in dirnames if d.lower() == "masks" and _images_below(here / d, everything=True)]:
            where = folder.parent / "masks" / here.relative_to(folder.parent)
            warnings.append(f"{here / d}: lesion masks inside a class folder are not read; they belong in {where}, "
                            "one <image name>.png each")
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in NOT_DATA | set(CLASS_OF_FOLDER)
                             and not d.startswith("."))
        for name in names:
            p = here / name
            if is_image(p):
                files.append(p)
            elif p.suffix.lower() not in NOT_SLICES and not name.startswith(".") and p.is_file():
                unread[p.suffix.lower() or "(no extension)"] += 1
            elif p.is_symlink() and not p.exists() and not name.startswith("."):
                problems.append(f"{p}: a link to a missing file ({os.readlink(p)}); for a git-annex or DataLad "
                                "copy, fetch the content first")
    if unread:  # a format we do not read would otherwise drop slices without a word
        kinds = ", ".join(f"{n} {kind}" for kind, n in unread.most_common())
        warnings.append(f"{folder}: {sum(unread.values())} file{'s' * (sum(unread.values()) != 1)} not read as slices "
                        f"({kinds}); slices are read from PNG, JPEG, BMP, TIFF, WebP, GIF or DICOM")
    return sorted(files)


def from_class_folders(root: Path, window: tuple[float, float] | None) -> Dataset:
    warnings: list[str] = []
    problems: list[str] = []
    parent, others = _find_class_parent(root, warnings)
    if parent != root and (root / "masks").is_dir():  # masks sit beside the class folders, not at the top
        warnings.append(f"{root / 'masks'}: not used; lesion masks are read from {parent / 'masks'}, beside the "
                        "class folders")
    warnings += _left_above(root, parent, others)
    pseudonym = Pseudonymizer(root)
    samples = []
    loose = 0
    for folder in sorted(parent.iterdir()):
        key = folder.name.lower()
        if not folder.is_dir():
            loose += is_image(folder)
            continue
        if key not in CLASS_OF_FOLDER:
            if key in UNLABELLED_FOLDERS:
                warnings.append(f"{folder}: unlabelled slices, not used for training or evaluation")
            elif key not in NOT_DATA and not key.startswith(".") and not any(p.is_relative_to(folder) for p in others):
                n = _images_below(folder)
                if n:  # a misspelt class folder would otherwise drop a whole class without a word
                    warnings.append(f"{folder}: not a class folder, so its {n} image{'s' * (n != 1)} are not used (class "
                                    "folders are 'Normal cases', 'Bengin cases', 'Malignant cases', or "
                                    "normal/benign/malignant)")
            continue
        known = len(problems)
        files = _class_files(folder, problems, warnings)
        if not files and len(problems) == known:  # not one that could not be read: that is named already
            warnings.append(f"{folder}: empty class folder")
        for p in files:
            dicom = is_dicom(p)
            # A DICOM slice names its patient, so a series never straddles train and test.
            samples.append(Sample(p.relative_to(root).as_posix(), p, CLASS_OF_FOLDER[key],
                                  dicom_patient(p, pseudonym) if dicom else None,
                                  find_mask(parent, p.parent.relative_to(parent).as_posix(), p.stem,
                                            flat=p.parent == folder),
                                  window=window if dicom else None))
    if loose:
        warnings.append(f"{parent}: {loose} image{'s' * (loose != 1)} beside the class folders, in none of them: "
                        "not used")
    _note_new_key(pseudonym, warnings)
    return Dataset(root, samples, "class-folders", warnings, problems)


def _box_text(text: str, where: str) -> Box | None:
    """'x0 y0 x1 y1' (the shortcut_box column), or None when empty."""
    if not text:
        return None
    parts = text.replace(",", " ").split()
    try:
        box = tuple(int(float(p)) for p in parts)
    except (ValueError, OverflowError):  # OverflowError: inf
        box = ()
    if len(box) != 4:
        raise DataError(f"{where}: shortcut_box must be four numbers 'x0 y0 x1 y1', got '{text}'")
    return box  # type: ignore[return-value]


def _int(row: dict, col: str, where: str) -> int:
    try:
        return int(float(row[col]))
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        raise DataError(f"{where}: column {col} must be a number of pixels, got '{row[col] or ''}'") from None


def from_manifest(root: Path, manifest: Path, window: tuple[float, float] | None) -> Dataset:
    """Rows path,label[,patient][,mask][,window][,x0,y0,x1,y1][,shortcut][,shortcut_box]; a path repeated adds boxes."""
    warnings: list[str] = []
    problems: list[str] = []
    by_path: dict[str, Sample] = {}
    pseudonym = Pseudonymizer(root)
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest}: cannot read the manifest ({exc.__class__.__name__})") from None
    reader = csv.DictReader(text.splitlines())
    cols = set(reader.fieldnames or ())
    if not {"path", "label"} <= cols:
        raise DataError(f"{manifest}: needs the columns path,label (optional: patient, mask, window, x0,y0,x1,y1)")
    has_boxes = set(BOX_COLUMNS) <= cols
    for line, row in enumerate(reader, start=2):
        where = f"{manifest}:{line}"
        rel = (row.get("path") or "").strip()
        try:
            path = root / rel
            if not rel or not path.is_file():
                raise DataError(f"{where}: image not found: {rel or '(empty path)'}")
            label = parse_label(row["label"] or "", where)
            win_text = (row.get("window") or "").strip()
            win = parse_window(win_text, where) if win_text else window
            given = [c for c in BOX_COLUMNS if (row.get(c) or "").strip()] if has_boxes else []
            if given and len(given) < len(BOX_COLUMNS):  # else a half-filled box was dropped without a word
                raise DataError(f"{where}: a lesion box needs all of {','.join(BOX_COLUMNS)}; "
                                f"{', '.join(c for c in BOX_COLUMNS if c not in given)} empty")
            box = tuple(_int(row, c, where) for c in BOX_COLUMNS) if given else None
        except DataError as exc:
            problems.append(str(exc))
            continue
        case_id = Path(rel).as_posix()
        if case_id in by_path:  # another box for an image already listed
            prev = by_path[case_id]
            if prev.label != label:
                problems.append(f"{where}: {rel} listed again with another label")
            elif box:
                by_path[case_id] = replace(prev, boxes=prev.boxes + (box,))
            continue
        mask_rel = (row.get("mask") or "").strip()
        mask = root / mask_rel if mask_rel else find_mask(root, Path(rel).parent.name, Path(rel).stem)
        if mask_rel and not mask.is_file():
            warnings.append(f"{where}: mask not found: {mask_rel} (image kept without a mask)")
            mask = None
        shortcut = (row.get("shortcut") or "").strip()
        try:
            shortcut_box = _box_text((row.get("shortcut_box") or "").strip(), where)
        except DataError as exc:
            problems.append(str(exc))
            continue
        dicom = is_dicom(path)
        # the column wins
        patient = (row.get("patient") or "").strip() or (dicom_patient(path, pseudonym) if dicom else None)
        by_path[case_id] = Sample(case_id, path, label, patient, mask, int(shortcut) if shortcut.isdigit() else None,
                                  win if dicom else None, (box,) if box else (), shortcut_box)
    _note_new_key(pseudonym, warnings)
    return Dataset(root, list(by_path.values()), "manifest", warnings, problems, manifest)


def _note_new_key(pseudonym: Pseudonymizer, warnings: list[str]) -> None:
    """A key made outside the data folder (read-only) is said once, as a saved split there is."""
    preferred = pseudonym.root / "splits"
    if pseudonym.created is not None and pseudonym.created.parent != preferred:
        warnings.append(f"{preferred}: not writable; patient pseudonym key saved to {pseudonym.created} "
                        "(keep it private; deleting it changes the pseudonyms)")
