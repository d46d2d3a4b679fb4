"""Reading slices and the one resize policy shared by training, CAM computation and display.

Policy: pad the slice to a square with black (centred), then resize to size x size
(bilinear with antialiasing; masks the same, then thresholded at half). Because every stage calls
`to_square`, a heatmap drawn at input size lines up with the image and its mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gradfaith_tui.errors import DataError

LUNG_WINDOW = (1500.0, -600.0)  # (width, level) in HU
MEDIASTINAL_WINDOW = (350.0, 50.0)


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to 8-bit grey with a window width/level."""
    lo = level - width / 2
    return (np.clip((hu - lo) / width, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_grey(path: Path) -> np.ndarray:
    """A slice as a 2-D uint8 array; RGB files of grey content are converted to luminance."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A lesion mask (any non-zero pixel is lesion) that must match its image's size."""
    mask = read_grey(path) > 0
    if mask.shape != shape:
        raise DataError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}")
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
    return out > 127 if is_mask else out
