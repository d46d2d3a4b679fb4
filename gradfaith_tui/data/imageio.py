"""Reading slices and the one resize policy shared by training, CAM computation and display.

Policy: pad the slice to a square with black (centred), then resize to size x size
(bilinear with antialiasing; masks the same, then thresholded at half). Because every stage calls
`to_square`, a heatmap drawn at input size lines up with the image and its mask.

DICOM slices are converted to Hounsfield units with their modality LUT (RescaleSlope/Intercept)
and windowed to 8 bit; the lung window is the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from gradfaith_tui.errors import DataError

LUNG_WINDOW = (1500.0, -600.0)  # (width, level) in HU
MEDIASTINAL_WINDOW = (350.0, 50.0)
WINDOW_PRESETS = {"lung": LUNG_WINDOW, "mediastinal": MEDIASTINAL_WINDOW}
DICOM_EXTS = {".dcm", ".dicom"}
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in original pixels; x1/y1 exclusive


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to 8-bit grey with a window width/level."""
    lo = level - width / 2
    return (np.clip((hu - lo) / width, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def parse_window(text: str, where: str = "--window") -> tuple[float, float]:
    """'lung', 'mediastinal', or a custom 'W,L' / 'W/L' (e.g. 400,40) -> (width, level)."""
    t = text.strip().lower()
    if t in WINDOW_PRESETS:
        return WINDOW_PRESETS[t]
    parts = t.replace("/", ",").replace("w", "").replace("l", "").split(",")
    try:
        width, level = (float(p) for p in parts)
    except ValueError:
        raise DataError(f"{where}: window '{text}' is not lung, mediastinal or W,L (e.g. 1500,-600)") from None
    if width <= 0:
        raise DataError(f"{where}: window width must be positive, got '{text}'")
    return width, level


def is_dicom(path: Path) -> bool:
    """By extension, or by the 'DICM' magic for the extension-less files scanners export."""
    if path.suffix.lower() in DICOM_EXTS:
        return True
    if path.suffix:
        return False
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def read_dicom_hu(path: Path) -> np.ndarray:
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
        hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    except Exception as exc:  # pydicom raises many types for broken or compressed files
        raise DataError(f"{path}: not a readable DICOM slice ({exc.__class__.__name__}: {exc})") from None
    if hu.ndim != 2:
        raise DataError(f"{path}: DICOM has {hu.ndim} dimensions; export single greyscale slices")
    return hu


def dicom_patient(path: Path, pseudonym: Callable[[str], str]) -> str | None:
    """The slice's patient, for splitting by patient: `pseudonym` of its PatientID tag (a keyed hash, see
    data/pseudonym.py), so no identifier reaches splits, caches or reports. None where the tag is empty
    (anonymised) or the header cannot be read (reading the pixels reports that)."""
    import pydicom

    try:
        pid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID", ""))
    except Exception:  # broken files are named when their pixels are read
        return None
    pid = pid.strip()
    return pseudonym(pid) if pid else None


def read_grey(path: Path, win: tuple[float, float] | None = None) -> np.ndarray:
    """A slice as a 2-D uint8 array; RGB files of grey content are converted to luminance,
    DICOM is windowed (default lung)."""
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    if is_dicom(path):
        return window(read_dicom_hu(path), *(win or LUNG_WINDOW))
    return _pixels(path, lesion=False)


def _pixels(path: Path, lesion: bool) -> np.ndarray:
    """An image file as 8-bit grey, or (lesion) as a mask of its non-zero pixels at any bit depth.
    16-bit and float slices (CT exported as PNG/TIFF) are stretched from their own range onto 0-255:
    Pillow's conversion to 8 bits clips at 255, which whites out nearly every pixel of a 12-bit CT."""
    try:
        with Image.open(path) as im:
            im.load()
            wide = im.mode.startswith(("I", "F"))
            if lesion:
                return np.asarray(im if wide else im.convert("L")) != 0
            return _stretch(np.asarray(im, np.float64)) if wide else np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A lesion mask (any non-zero pixel is lesion) that must match its image's size."""
    mask = read_grey(path) > 0 if is_dicom(path) else _pixels(path, lesion=True)
    if mask.shape != shape:
        raise DataError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return mask


def boxes_mask(boxes: tuple[Box, ...], shape: tuple[int, int], where: str) -> np.ndarray:
    """Boxes in original pixel coordinates as a mask; a box outside the image names its file."""
    h, w = shape
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise DataError(f"{where}: box {x0},{y0},{x1},{y1} does not fit its {w}x{h} image")
        mask[y0:y1, x0:x1] = True
    return mask


def pad_square(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=arr.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def to_square(arr: np.ndarray, size: int, is_mask: bool = False) -> np.ndarray:
    """Apply the resize policy: pad to square, then resize to size x size."""
    sq = pad_square(arr.astype(np.uint8) * 255 if is_mask else arr)
    im = Image.fromarray(sq)
    if im.size != (size, size):
        # The same filter for masks, then a 50% threshold: a lesion pixel is one the lesion mostly covers.
        im = im.resize((size, size), Image.BILINEAR)
    out = np.asarray(im)
    if not is_mask:
        return out
    mask = out > 127
    if not mask.any() and sq.any():  # a lesion smaller than a pixel at this size: keep its most-covered pixel,
        if out.max() > 0:            # so a case with a mask still has one to measure against
            return out == out.max()
        ys, xs = np.nonzero(sq)
        mask[min(size - 1, int(ys.mean() * size / sq.shape[0])), min(size - 1, int(xs.mean() * size / sq.shape[1]))] = True
    return mask
