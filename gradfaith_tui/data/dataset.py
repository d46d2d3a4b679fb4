"""Find a dataset on disk and describe it as samples: class folders (IQ-OTH/NCCD or generic) or a CSV manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.data.imageio import Box
from gradfaith_tui.errors import DataError


@dataclass(frozen=True)
class Sample:
    case_id: str  # path relative to the dataset root, POSIX style: stable across machines
    path: Path
    label: int | None
    patient: str | None = None
    mask_path: Path | None = None
    shortcut: int | None = None  # planted-shortcut truth; phantoms only
    window: tuple[float, float] | None = None  # DICOM (width, level); None = lung
    boxes: tuple[Box, ...] = ()  # lesion boxes from a CSV, original pixel coordinates
    shortcut_box: Box | None = None  # where the planted shortcut sits (phantoms): its removal is the ground truth


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]
    layout: str  # "manifest" or "class-folders"
    warnings: list[str]
    problems: list[str] = field(default_factory=list)  # bad entries skipped, each naming its file
    manifest: Path | None = None  # the CSV, when the layout is a manifest
    ids_set_aside: bool = False  # every slice carried one patient id, so the split is by slice (said in warnings)

    _file_sha1: dict[str, str | None] | None = field(default=None, init=False, repr=False)

    def file_sha1(self) -> dict[str, str | None]:
        """case_id -> SHA-1 of the file's bytes (None where unreadable), read once per Dataset."""
        if self._file_sha1 is None:
            out: dict[str, str | None] = {}
            for s in self.samples:
                try:
                    out[s.case_id] = hashlib.sha1(s.path.read_bytes()).hexdigest()
                except OSError:  # reported where the pixels are read
                    out[s.case_id] = None
            self._file_sha1 = out
        return self._file_sha1

    def fingerprint(self) -> str:
        """Content hash of every labelled file, its label and DICOM window: checkpoints and caches are tied to it.
        A CSV's lesion boxes are not part of it, as mask files are not: they change nothing a model sees, and
        precompute recomputes the metrics that read them from the stored maps."""
        return self._hash(with_boxes=False)

    def fingerprints(self) -> tuple[str, ...]:
        """fingerprint(), then, where a CSV gives lesion boxes, the one versions before 2026-11-28 gave these
        data (the boxes were part of it): checkpoints and caches made then still match while the boxes stay."""
        if not any(s.boxes for s in self.samples):
            return (self.fingerprint(),)
        return self.fingerprint(), self._hash(with_boxes=True)

    def _hash(self, with_boxes: bool) -> str:
        h = hashlib.sha1()
        sha = self.file_sha1()
        for s in sorted(self.samples, key=lambda s: s.case_id):
            h.update(f"{s.case_id}\0{s.label}\0".encode())
            boxes = s.boxes if with_boxes else ()
            if s.window is not None or boxes:  # only then, so older fingerprints stay valid
                h.update(f"{s.window}\0{boxes}\0".encode())
            digest = sha[s.case_id]
            # unreadable: still a stable fingerprint; the file is reported elsewhere
            h.update(bytes.fromhex(digest) if digest else b"unreadable")
        return h.hexdigest()[:16]

    def counts(self) -> list[int]:
        return [sum(s.label == k for s in self.samples) for k in range(len(CLASS_NAMES))]


def parse_label(value: str, where: str) -> int:
    v = value.strip()
    if v.isdigit() and int(v) < len(CLASS_NAMES):
        return int(v)
    names = [n.lower() for n in CLASS_NAMES]
    word = v.lower().removesuffix(" cases").removesuffix(" case")  # the dataset's folder names, as import takes them
    if word in names:
        return names.index(word)
    if word == "bengin":
        return 1
    raise DataError(f"{where}: unknown label '{value}' (use {', '.join(CLASS_NAMES)} or 0-2)")


def discover(root: Path, window: tuple[float, float] | None = None, strict: bool = False) -> Dataset:
    """Describe the dataset at root: a CSV file, a folder with manifest.csv (which takes precedence),
    or class folders. `window` is the default DICOM window; with strict, the first bad entry is an error."""
    from gradfaith_tui.data.imageio import LUNG_WINDOW
    from gradfaith_tui.data.layouts import from_class_folders, from_manifest

    if window is not None and tuple(map(float, window)) == tuple(map(float, LUNG_WINDOW)):
        window = None  # the default given explicitly (--window lung): the same slices, the same fingerprint
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        ds = from_manifest(root.parent, root, window)
    elif root.exists() and not root.is_dir():
        raise DataError(f"--data: {root} is a file, not a data folder or a CSV manifest (.csv)")
    elif not root.is_dir():
        raise DataError(f"--data: folder not found: {root}")
    elif (root / "manifest.csv").is_file():
        ds = from_manifest(root, root / "manifest.csv", window)
    else:
        ds = from_class_folders(root, window)
    if strict and ds.problems:
        raise DataError(ds.problems[0])
    if not ds.samples:
        raise DataError(f"{root}: no labelled images found" + (f" ({ds.problems[0]})" if ds.problems else ""))
    _judge_patient_ids(ds)
    for name, n in zip(CLASS_NAMES, ds.counts()):  # said by every command, not by `data check` alone
        if not n:
            ds.warnings.append(f"class {name} has no images: the models never see it, and Table I and the audit "
                               "cannot judge it")
    return ds


def _judge_patient_ids(ds: Dataset) -> None:
    """One id on every slice cannot split train from test (an anonymiser's 'ANONYMOUS', or one patient):
    the slices are then split one by one. Ids on some slices only are kept, and the gap said."""
    named = [s.patient for s in ds.samples if s.patient]
    if len(set(named)) == 1 and len(named) > 1:
        ds.samples = [replace(s, patient=None) for s in ds.samples]
        ds.ids_set_aside = True
        ds.warnings.append(f"all {len(named)} slices with a patient id share one (an anonymiser's placeholder, or a "
                           "single patient), which cannot keep train and test apart: the slices are split one by one, "
                           "so near-duplicates can fall in both (`data check` lists them)")
    elif named and len(named) < len(ds.samples):
        missing = [s.case_id for s in ds.samples if not s.patient]
        ds.warnings.append(f"{len(missing)} of {len(ds.samples)} slices have no patient id (e.g. {missing[0]}): each is "
                           "split on its own, so it may sit in another split than the rest of its patient's slices")
