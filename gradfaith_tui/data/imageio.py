"""Reading slices and the one resize policy shared by training, CAM computation and display.

Policy: pad the slice to a square with black (centred), then resize to size x size
(bilinear with antialiasing; masks the same, then thresholded at half). Because every stage calls
`to_square`, a heatmap drawn at input size lines up with the image and its mask.

DICOM slices are converted to Hounsfield units with their modality LUT (RescaleSlope/Intercept)
and windowed to 8 bit; the lung window is the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from gradfaith_tui.errors import DataError

LUNG_WINDOW = (1500.0, -600.0)  # (width, level) in HU
MEDIASTINAL_WINDOW = (350.0, 50.0)
WINDOW_PRESETS = {"lung": LUNG_WINDOW, "mediastinal": MEDIASTINAL_WINDOW}
DICOM_EXTS = {".dcm", ".dicom", ".ima"}  # .ima: Siemens
PILLOW_EXTS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as Pillow converts RGB to L
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
    if not (math.isfinite(width) and math.isfinite(level)):  # float() takes nan/inf; they window to garbage
        raise DataError(f"{where}: window width and level must be finite numbers, got '{text}'")
    if width <= 0:
        raise DataError(f"{where}: window width must be positive, got '{text}'")
    return width, level


def is_dicom(path: Path) -> bool:
    """By extension, or by the 'DICM' magic for any other file that is not a known image: scanners and PACS
    export extension-less names (IM0001) and UID names whose last digits look like one (1.2.840....123)."""
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTS:
        return True
    if suffix in PILLOW_EXTS:
        return False
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def read_dicom_grey(path: Path, win: tuple[float, float] | None = None) -> np.ndarray:
    """A DICOM slice as 8-bit grey. CT is converted to HU by its modality LUT and windowed (`win`, default lung);
    other pixels (a secondary capture, a screenshot saved as DICOM) are not HU, so a HU window would white
    them out: they are shown by their own window where the file has one, else their stored range, with
    MONOCHROME1 (low values white) inverted."""
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        colour = int(ds.get("SamplesPerPixel", 1)) == 3 and pixels.ndim == 3
        # colour: a screenshot or secondary capture of grey content, taken as its luminance as Pillow does
        values = (pixels @ LUMA if colour else apply_modality_lut(pixels, ds)).astype(np.float32)
    except Exception as exc:  # pydicom raises many types for broken or compressed files
        raise DataError(f"{path}: not a readable DICOM slice ({_one_line(exc)})") from None
    if values.ndim != 2:
        raise DataError(f"{path}: DICOM holds {values.shape[0]} frames; export one slice per file")
    if not colour and _is_hu(ds):
        return window(values, *(win or LUNG_WINDOW))
    own = _own_window(ds)
    if own is not None:
        grey = window(values, *own)
    elif int(ds.get("BitsStored", 16)) <= 8 and not ds.get("PixelRepresentation", 0):
        grey = np.clip(values, 0, 255).astype(np.uint8)  # already display grey levels
    else:
        grey = _stretch(values)
    return 255 - grey if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" else grey


def _is_hu(ds) -> bool:
    """CT numbers: a CT image, a rescale said to be HU, or a rescale in a file that names no modality."""
    modality = str(ds.get("Modality", "")).upper()
    return (modality == "CT" or str(ds.get("RescaleType", "")).upper() == "HU"
            or (not modality and "RescaleIntercept" in ds))


def _own_window(ds) -> tuple[float, float] | None:
    """The file's first (width, level), in the units its modality LUT gives; None when absent or unusable."""
    def first(name: str) -> float | None:
        value = ds.get(name)
        if value is None:
            return None
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # several windows: the first
            value = value[0] if len(value) else None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    width, level = first("WindowWidth"), first("WindowCenter")
    return (width, level) if width is not None and level is not None and width > 0 else None


def _one_line(exc: Exception) -> str:
    """pydicom's message on one line; a compressed file without its decoder gets the install hint."""
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    hint = ""
    if "plugin" in text.lower() or "handler" in text.lower() or "decompress" in text.lower():
        hint = "; a compressed slice needs a decoder: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
    return f"{exc.__class__.__name__}: {text}{hint}"


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
        return read_dicom_grey(path, win)
    return _pixels(path, lesion=False)


def needs_full_read(im: Image.Image) -> bool:
    """Whether read_grey gives other pixels than Pillow's own 8-bit grey of this open file: 16-bit or float
    (stretched), several pages (refused), an EXIF turn (turned upright)."""
    return (_is_wide(im) or getattr(im, "n_frames", 1) > 1
            or im.getexif().get(ExifTags.Base.Orientation, 1) != 1)


def _is_wide(im: Image.Image) -> bool:
    return im.mode.startswith(("I", "F"))


def _pixels(path: Path, lesion: bool) -> np.ndarray:
    """An image file as 8-bit grey, or (lesion) as a mask of its non-zero pixels at any bit depth, turned
    upright by its EXIF orientation as every viewer shows it (a mask the same way, by its own tag).
    16-bit and float slices (CT exported as PNG/TIFF) are stretched from their own range onto 0-255:
    Pillow's conversion to 8 bits clips at 255, which whites out nearly every pixel of a 12-bit CT."""
    try:
        with Image.open(path) as im:
            pages = getattr(im, "n_frames", 1)
            if pages > 1:  # a stack or an animation: which page is the slice is not ours to guess
                raise DataError(f"{path}: holds {pages} pages or frames; export one slice per file")
            im.load()
            im = ImageOps.exif_transpose(im)
            wide = _is_wide(im)
            if lesion:
                return np.asarray(im if wide else im.convert("L")) != 0
            return _stretch(np.asarray(im, np.float64)) if wide else np.asarray(im.convert("L"))
    except Image.DecompressionBombError:
        raise DataError(f"{path}: too many pixels to open safely (over {2 * Image.MAX_IMAGE_PIXELS:,}, "
                        "Pillow's decompression-bomb limit); downscale the slice") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _stretch(values: np.ndarray) -> np.ndarray:
    """min-max onto 0-255; NaN and infinite pixels (a float export's holes) become black, not the whole slice."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    out = np.round((np.where(finite, values, lo) - lo) * (255.0 / (hi - lo)))
    return out.astype(np.uint8)


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
