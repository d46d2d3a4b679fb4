"""Find a dataset on disk and describe it as samples: IQ-OTH/NCCD class folders or a CSV manifest."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from gradfaith_tui.config import CLASS_FOLDERS, CLASS_NAMES
from gradfaith_tui.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
UNLABELLED_FOLDERS = {"test cases"}  # IQ-OTH/NCCD ships unlabelled slices there


@dataclass(frozen=True)
class Sample:
    case_id: str  # path relative to the dataset root, POSIX style: stable across machines
    path: Path
    label: int | None
    patient: str | None = None
    mask_path: Path | None = None
    shortcut: int | None = None  # planted-shortcut truth; phantoms only


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]
    layout: str  # "manifest" or "class-folders"
    warnings: list[str]

    def fingerprint(self) -> str:
        """Content hash of every labelled file and its label: checkpoints and caches are tied to it."""
        h = hashlib.sha1()
        for s in sorted(self.samples, key=lambda s: s.case_id):
            h.update(f"{s.case_id}\0{s.label}\0".encode())
            h.update(hashlib.sha1(s.path.read_bytes()).digest())
        return h.hexdigest()[:16]

    def counts(self) -> list[int]:
        return [sum(s.label == k for s in self.samples) for k in range(len(CLASS_NAMES))]


def _label(value: str, where: str) -> int:
    v = value.strip()
    if v.isdigit() and int(v) < len(CLASS_NAMES):
        return int(v)
    names = [n.lower() for n in CLASS_NAMES]
    if v.lower() in names:
        return names.index(v.lower())
    if v.lower() == "bengin":
        return 1
    raise DataError(f"{where}: unknown label '{value}' (use {', '.join(CLASS_NAMES)} or 0-2)")


def _from_manifest(root: Path, manifest: Path) -> Dataset:
    samples, warnings = [], []
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{manifest}: needs the columns path,label (optional: patient, mask)")
        for line, row in enumerate(reader, start=2):
            where = f"{manifest}:{line}"
            path = root / row["path"]
            if not path.is_file():
                raise DataError(f"{where}: image not found: {row['path']}")
            mask = (row.get("mask") or "").strip()
            if mask and not (root / mask).is_file():
                raise DataError(f"{where}: mask not found: {mask}")
            shortcut = (row.get("shortcut") or "").strip()
            samples.append(Sample(Path(row["path"]).as_posix(), path, _label(row["label"], where),
                                  (row.get("patient") or "").strip() or None,
                                  root / mask if mask else None, int(shortcut) if shortcut else None))
    return Dataset(root, samples, "manifest", warnings)


def _find_class_parent(root: Path) -> Path:
    """The folder holding the class folders, however deeply a copy nests it."""
    parents = set()
    for dirpath, dirnames, _ in os.walk(root):
        if Path(dirpath).relative_to(root).parts.__len__() > 3:
            dirnames[:] = []
            continue
        if any(d.lower() in CLASS_FOLDERS for d in dirnames):
            parents.add(Path(dirpath))
    if not parents:
        raise DataError(f"{root}: no class folders found (expected 'Normal cases', 'Bengin cases', "
                        "'Malignant cases', or a manifest.csv)")
    if len(parents) > 1:
        raise DataError(f"{root}: several datasets found ({', '.join(sorted(str(p) for p in parents))}); pass one with --data")
    return parents.pop()


def _from_class_folders(root: Path) -> Dataset:
    parent = _find_class_parent(root)
    samples, warnings = [], []
    for folder in sorted(parent.iterdir()):
        key = folder.name.lower()
        if not folder.is_dir() or key not in CLASS_FOLDERS:
            if folder.is_dir() and key in UNLABELLED_FOLDERS:
                warnings.append(f"{folder}: unlabelled slices, not used for training or evaluation")
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            warnings.append(f"{folder}: empty class folder")
        for p in files:
            rel = p.relative_to(root).as_posix()
            mask = parent / "masks" / folder.name / (p.stem + ".png")
            samples.append(Sample(rel, p, CLASS_FOLDERS[key], None, mask if mask.is_file() else None))
    return Dataset(root, samples, "class-folders", warnings)


def discover(root: Path) -> Dataset:
    """Describe the dataset under root; a manifest.csv at the root takes precedence over folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: folder not found: {root}")
    manifest = root / "manifest.csv"
    ds = _from_manifest(root, manifest) if manifest.is_file() else _from_class_folders(root)
    if not ds.samples:
        raise DataError(f"{root}: no labelled images found")
    return ds

