"""Synthetic chest-CT phantoms with known lesions and optional planted shortcuts.

Slices are drawn in Hounsfield units (body, fat, two lungs with vessels, heart, aorta,
spine, ribs, table), given scanner-like noise, and windowed to 8 bit with the lung preset,
so the audit has a ground truth the real dataset lacks: every lesion's mask, and which
images carry a spurious cue.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from gradfaith_tui.config import WRITE_FOLDERS, WRITE_STEMS
from gradfaith_tui.data.imageio import LUNG_WINDOW, window
from gradfaith_tui.errors import DataError

HU_AIR, HU_FAT, HU_SOFT, HU_LUNG, HU_BONE = -1000.0, -100.0, 40.0, -850.0, 700.0


@dataclass(frozen=True)
class PhantomConfig:
    n_patients: int = 100
    slices_per_patient: int = 10
    size: int = 256
    balance: tuple[float, float, float] = (0.38, 0.11, 0.51)  # like IQ-OTH/NCCD
    seed: int = 0
    shortcut_class: int | None = None  # class whose images may carry a burned-in marker
    shortcut_rate: float = 0.0  # share of that class's images that carry it (exact, rounded)
    noise_hu: float = 25.0


@dataclass(frozen=True)
class PhantomSlice:
    image: np.ndarray  # uint8 (size, size)
    mask: np.ndarray  # bool (size, size); all False for Normal
    label: int
    patient: str
    shortcut: bool
    shortcut_box: tuple[int, int, int, int] | None = None  # the marker, x0, y0, x1, y1 (x1, y1 exclusive)


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _window_of(n: int, cy: float, cx: float, r: float) -> tuple[slice, slice]:
    """Pixel rows/cols of the [-1, 1] grid that a disc of radius r around (cy, cx) can touch."""
    lo = lambda c: max(0, int((c - r + 1) / 2 * n) - 1)  # noqa: E731
    hi = lambda c: min(n, int((c + r + 1) / 2 * n) + 2)  # noqa: E731
    return slice(lo(cy), hi(cy)), slice(lo(cx), hi(cx))


def _paint(hu, yy, xx, cy, cx, ry, rx, value, angle=0.0, within=None):
    """Set value inside a small ellipse, touching only its bounding window (phantoms stay fast)."""
    win = _window_of(hu.shape[0], cy, cx, max(ry, rx))
    m = _ellipse(yy[win], xx[win], cy, cx, ry, rx, angle)
    if within is not None:
        m &= within[win]
    hu[win][m] = value


def patient_labels(cfg: PhantomConfig) -> list[int]:
    """Class of each patient: counts follow the balance exactly, order shuffled by the seed."""
    counts = np.floor(np.asarray(cfg.balance) / sum(cfg.balance) * cfg.n_patients).astype(int)
    for i in np.argsort(-np.asarray(cfg.balance))[: cfg.n_patients - counts.sum()]:
        counts[i] += 1
    labels = np.repeat(np.arange(3), counts)
    np.random.default_rng(cfg.seed).shuffle(labels)
    return labels.tolist()


class _Patient:
    """Anatomy shared by all slices of one patient; only the slice position changes."""

    def __init__(self, rng: np.random.Generator, label: int):
        self.label = label
        self.body = (0.05 + rng.normal(0, 0.02), rng.normal(0, 0.02), 0.62 + rng.normal(0, 0.03), 0.86 + rng.normal(0, 0.03))
        self.lung_rx, self.lung_ry = 0.27 + rng.normal(0, 0.02), 0.40 + rng.normal(0, 0.03)
        self.lung_dx, self.tilt = 0.38 + rng.normal(0, 0.015), rng.normal(0, 0.08)
        self.vessels = rng.uniform(-1, 1, size=(60, 2)), rng.uniform(0.006, 0.016, size=60)
        self.ribs = rng.uniform(0, 2 * np.pi, size=10)
        self.lesion = None
        if label:
            side = rng.choice([-1.0, 1.0])
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.5)
            cy = -0.02 + rad * np.sin(ang) * self.lung_ry * 0.8
            cx = side * self.lung_dx + rad * np.cos(ang) * self.lung_rx * 0.7
            if label == 1:  # benign: small, smooth, sometimes calcified
                r = rng.uniform(0.045, 0.07)
                shape = np.zeros(4)
                hu = rng.uniform(20, 60)
                calcified = rng.random() < 0.3
                spicules = np.zeros((0, 2))
            else:  # malignant: larger, lobulated, spiculated
                r = rng.uniform(0.09, 0.15)
                shape = rng.uniform(0.12, 0.25, size=4) * rng.choice([-1, 1], size=4)
                hu = rng.uniform(30, 70)
                calcified = False
                spicules = np.stack([rng.uniform(0, 2 * np.pi, 9), rng.uniform(0.4, 0.9, 9)], 1)
            self.lesion = dict(cy=cy, cx=cx, r=r, shape=shape, phase=rng.uniform(0, 2 * np.pi, 4),
                               hu=hu, calcified=calcified, spicules=spicules)

    def _base(self, yy, xx):
        """The slice-independent anatomy (table, body, fat, ribs, spine), drawn once per patient."""
        if getattr(self, "_base_hu", None) is None or self._base_hu.shape != yy.shape:
            by, bx, bry, brx = self.body
            hu = np.full(yy.shape, HU_AIR)
            hu[(yy > by + bry + 0.06) & (yy < by + bry + 0.1) & (np.abs(xx) < 0.9)] = 150.0  # scanner table
            hu[_ellipse(yy, xx, by, bx, bry, brx)] = HU_FAT
            hu[_ellipse(yy, xx, by, bx, bry - 0.05, brx - 0.06)] = HU_SOFT
            for a in self.ribs:  # ribs just inside the fat layer
                ry, rx = by + (bry - 0.08) * np.sin(a), bx + (brx - 0.09) * np.cos(a)
                _paint(hu, yy, xx, ry, rx, 0.025, 0.04, 500.0, a)
            _paint(hu, yy, xx, by + bry - 0.16, bx, 0.09, 0.09, HU_BONE)
            _paint(hu, yy, xx, by + bry - 0.16, bx, 0.06, 0.06, 250.0)
            self._base_hu = hu
        return self._base_hu.copy()

    def slice_hu(self, yy, xx, z: float):
        hu = self._base(yy, xx)
        scale = np.sqrt(max(0.55, 1 - 0.35 * z * z))  # lungs shrink towards the apex and base
        lungs = np.zeros(yy.shape, bool)
        for side in (-1.0, 1.0):
            cx, ry, rx = side * self.lung_dx, self.lung_ry * scale, self.lung_rx * scale
            win = _window_of(yy.shape[0], -0.02, cx, max(ry, rx))
            lungs[win] |= _ellipse(yy[win], xx[win], -0.02, cx, ry, rx, side * self.tilt)
        hu[lungs] = HU_LUNG
        (vpos, vr) = self.vessels
        for (vy, vx), r in zip(vpos, vr):
            cy, cx = -0.02 + vy * self.lung_ry * 0.9, np.sign(vx) * self.lung_dx + (abs(vx) - 0.5) * self.lung_rx * 1.6
            _paint(hu, yy, xx, cy + 0.01 * z, cx, r, r, -300.0, within=lungs)
        heart_r = 0.2 * (1.0 - 0.25 * abs(z))
        _paint(hu, yy, xx, 0.12, 0.02, heart_r, heart_r * 1.1, HU_SOFT)
        _paint(hu, yy, xx, -0.08, 0.1, 0.06, 0.06, 150.0)  # contrast-filled aorta
        mask = np.zeros(yy.shape, bool)
        if self.lesion is not None:
            les = self.lesion
            rz = les["r"] * np.sqrt(max(0.45, 1 - (0.6 * z) ** 2))  # cross-section of a sphere-like lesion
            win = _window_of(hu.shape[0], les["cy"], les["cx"], rz * 2.2)
            dy, dx = yy[win] - les["cy"], xx[win] - les["cx"]
            theta, dist = np.arctan2(dy, dx), np.hypot(dy, dx)
            rim = rz * (1 + sum(a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(zip(les["shape"], les["phase"]))))
            local = dist <= rim
            for ang, length in les["spicules"]:  # thin strands radiating out; not part of the mask
                along = dx * np.cos(ang) + dy * np.sin(ang)
                across = np.abs(-dx * np.sin(ang) + dy * np.cos(ang))
                strand = (along > rz * 0.8) & (along < rz * (1 + length)) & (across < 0.007) & ~local
                hu[win][strand] = -200.0
            hu[win][local] = les["hu"]
            if les["calcified"]:
                hu[win][dist <= rz * 0.45] = 400.0
            mask[win] = local
        return hu, mask


def _draw_marker(img: Image.Image, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A burned-in annotation at the periphery: a bright tag with a letter, like a scanner label. Returns its box."""
    s = img.size[0]
    w = max(4, s // 10)
    corner = rng.integers(4)
    x0 = 2 if corner in (0, 2) else s - w - 2
    y0 = 2 if corner in (0, 1) else s - w - 2
    d = ImageDraw.Draw(img)
    d.rectangle([x0, y0, x0 + w, y0 + w], fill=255)
    d.text((x0 + w // 4, y0), "R", fill=0)
    return x0, y0, x0 + w + 1, y0 + w + 1  # PIL's rectangle includes both corners


def shortcut_images(cfg: PhantomConfig, labels: list[int]) -> set[int]:
    """Indices of the slices that carry the marker: exactly round(rate x images) of the chosen class."""
    if cfg.shortcut_class is None or cfg.shortcut_rate <= 0:
        return set()
    idx = [i for i, lab in enumerate(np.repeat(labels, cfg.slices_per_patient)) if lab == cfg.shortcut_class]
    rng = np.random.default_rng([cfg.seed, 7919])  # its own stream: anatomy does not depend on the shortcut
    return {int(i) for i in rng.permutation(idx)[: int(round(cfg.shortcut_rate * len(idx)))]}


def generate(cfg: PhantomConfig):
    """Yield every slice of every patient, deterministically for cfg.seed."""
    n = cfg.size
    g = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(g, g, indexing="ij")
    labels = patient_labels(cfg)
    marked = shortcut_images(cfg, labels)
    marker_rng = np.random.default_rng([cfg.seed, 104729])
    for p, label in enumerate(labels):
        rng = np.random.default_rng([cfg.seed, p])
        patient = _Patient(rng, label)
        zs = np.linspace(-0.6, 0.6, cfg.slices_per_patient) + rng.normal(0, 0.05)
        for k, z in enumerate(zs):
            hu, mask = patient.slice_hu(yy, xx, float(z))
            hu = gaussian_filter(hu, 0.6 * n / 256) + rng.normal(0, cfg.noise_hu, hu.shape)
            img = Image.fromarray(window(hu, *LUNG_WINDOW))
            shortcut = p * cfg.slices_per_patient + k in marked
            box = _draw_marker(img, marker_rng) if shortcut else None
            yield PhantomSlice(np.asarray(img), mask, label, f"P{p:04d}", shortcut, box)


MARKER = ".gradfaith-phantoms"  # in every phantom folder: the PhantomConfig as JSON
MANIFEST_COLUMNS = ["path", "label", "patient", "mask", "shortcut", "shortcut_box"]
PARTIAL = ".gradfaith-partial-"  # the hidden folder a dataset is built in before it is moved into place
SIDE_ENTRIES = ("masks", "splits", "manifest.csv", "manifest.csv.tmp", MARKER)


def _manifest_rows(out: Path) -> list[list[str]] | None:
    """The rows of out/manifest.csv when its header is the one write_dataset writes, else None."""
    try:
        with (out / "manifest.csv").open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return rows[1:] if rows and rows[0] == MANIFEST_COLUMNS else None


def folder_state(out: Path) -> str:
    """'empty' (missing, or a folder with nothing in it), 'phantoms' (written by write_dataset: the marker,
    or for folders made before it, the phantom manifest) or 'other' (anything else: the user's data)."""
    if not out.exists():
        return "empty"
    if not out.is_dir():
        return "other"
    if not any(not p.name.startswith(PARTIAL) for p in out.iterdir()):  # a killed run's leftover is ours
        return "empty"
    return "phantoms" if (out / MARKER).is_file() or _manifest_rows(out) is not None else "other"


def phantom_config(out: Path) -> dict | None:
    """The PhantomConfig a marked folder was written with (None: unmarked, or a marker that is not JSON)."""
    try:
        made = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return made if isinstance(made, dict) else None


def _strays(out: Path) -> list[str]:
    """Files in the class and mask folders that the manifest does not list: not ours, so --force keeps off."""
    rows = _manifest_rows(out) or []
    listed = {r[0] for r in rows if r} | {r[3] for r in rows if len(r) > 3 and r[3]}
    found = []
    for folder in (*WRITE_FOLDERS, "masks"):
        if (out / folder).is_symlink():  # deleting through a link would reach someone else's files
            return [folder]
        found += [p.relative_to(out).as_posix() for p in (out / folder).rglob("*") if not p.is_dir()]
    return sorted(rel for rel in found if rel not in listed)


def _check_target(out: Path, replace: bool) -> None:
    """Never write over data: out must be new or empty, or (replace) hold only phantoms this tool made."""
    state = folder_state(out)
    if state == "empty":
        return
    if not replace:
        raise DataError(f"{out}: exists and is not empty; pass a new folder, or --force to replace phantoms "
                        "this tool made")
    if state == "phantoms" and not (out / MARKER).is_file():  # a manifest alone may have been edited to list
        # a user's own files, which --force would then delete
        raise DataError(f"{out}: holds phantoms made before they were marked ({MARKER}), or a manifest like "
                        "theirs; --force deletes only marked phantoms, so delete it yourself or pass a new folder")
    strays = _strays(out) if state == "phantoms" else []
    if state == "other" or strays:
        example = f" (e.g. {strays[0]})" if strays else ""
        raise DataError(f"{out}: holds other data{example}, not only phantoms this tool made; --force replaces "
                        "only those, so pass a new folder")


def _remove_phantoms(out: Path) -> None:
    """Delete what write_dataset and `data split` put there, so no old file or split mixes with the new ones."""
    from gradfaith_tui.data.splitfile import fallback_dir_of

    for name in (*WRITE_FOLDERS, *SIDE_ENTRIES):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for old in fallback_dir_of(out).glob("split-seed*.csv"):  # saved there when out was read-only
        old.unlink()


def write_dataset(cfg: PhantomConfig, out: Path, replace: bool = False) -> int:
    """Write the phantoms in the IQ-OTH/NCCD layout, plus masks/, manifest.csv and the marker. Returns the slice
    count. Refuses (DataError) a folder that is not empty, unless replace and it holds only phantoms made here.
    Built in a hidden folder inside out and moved into place, so a failure leaves out as it was."""
    _check_target(out, replace)
    made = [d for d in (out, *out.parents) if not d.exists()]  # folders to take away again on failure
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(PARTIAL + "*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=PARTIAL, dir=out))
    except OSError as exc:  # a read-only folder: name it, not the hidden build folder inside it
        raise DataError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    try:
        n = _write(cfg, tmp)
    except BaseException:  # Ctrl-C and out-of-memory too: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    if replace:
        _remove_phantoms(out)
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name != MARKER):  # the marker first: it marks the folder ours
        entry.rename(out / entry.name)
    tmp.rmdir()
    return n


def _write(cfg: PhantomConfig, out: Path) -> int:
    for folder in WRITE_FOLDERS:
        (out / folder).mkdir(exist_ok=True)
        (out / "masks" / folder).mkdir(parents=True, exist_ok=True)
    counters = [0, 0, 0]
    rows = []
    for sl in generate(cfg):
        counters[sl.label] += 1
        name = f"{WRITE_STEMS[sl.label]} ({counters[sl.label]})"
        rel = f"{WRITE_FOLDERS[sl.label]}/{name}.jpg"
        # Grey content saved as RGB JPEG, as the real dataset ships it.
        Image.fromarray(sl.image).convert("RGB").save(out / rel, quality=95)
        mask_rel = ""
        if sl.mask.any():
            mask_rel = f"masks/{WRITE_FOLDERS[sl.label]}/{name}.png"
            Image.fromarray(sl.mask.astype(np.uint8) * 255).save(out / mask_rel)
        box = " ".join(map(str, sl.shortcut_box)) if sl.shortcut_box else ""
        rows.append((rel, sl.label, sl.patient, mask_rel, int(sl.shortcut), box))
    with (out / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows(rows)
    (out / MARKER).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return len(rows)
