"""Pure rendering helpers: text formats for cells and labels, tile layout, and heatmap tile images.

No Textual here, so this is testable and callable from worker threads. The colormap is a small
numpy jet (no matplotlib import: it costs start-up time); jet's hue steps stay distinct after
Rich downsamples to 256 colours, where a perceptual map's subtle shading would flatten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from gradfaith_tui.config import CLASS_NAMES, PAPER_LABELS
from gradfaith_tui.store.flags import NOTE_ONLY

if TYPE_CHECKING:  # PIL is imported when the first tile is drawn, not at start-up
    from PIL import Image

MISSING = "–"
OVERLAY_ALPHA = 0.5
MASK_RGB = (0, 255, 0)
MIN_TILE, MAX_TILE = 8, 48  # tile side in pixels (= terminal columns; rows are half)


def fmt_metric(value: float | None, width: int = 5) -> str:
    """Two decimals, or a dash where the metric does not apply (never a misleading 0)."""
    return (MISSING if value is None else f"{value:.2f}").rjust(width)


def class_name(label: int | None, short: bool = False) -> str:
    if label is None or not 0 <= label < len(CLASS_NAMES):
        return "?"
    name = CLASS_NAMES[label]
    return name[:5] + "." if short and len(name) > 6 else name


def short_case_id(case_id: str, width: int) -> str:
    """The file name, cut in the middle when too long so the case number at its end survives."""
    name = file_name(case_id)
    if len(name) <= width:
        return name
    name = name.rsplit(".", 1)[0]  # the extension is the first thing to go
    if len(name) <= width:
        return name
    keep = width - 1
    head = keep // 3
    return name[:head] + "…" + name[len(name) - (keep - head):]


def file_name(case_id: str) -> str:
    """A case id's last part: its folders (the class, a long dataset name) say less than its number."""
    return case_id.replace("\\", "/").rsplit("/", 1)[-1]


def flag_mark(flag, label: Callable[[str], str] | None = None) -> str:
    """The flag in a few words; with label (CaseSource.viewed_label), also the map that was in view when set."""
    mark = "✎ note" if flag.category == NOTE_ONLY else f"⚑ {flag.category}"
    return f"{mark} on {label(flag.viewed)}" if label is not None and flag.viewed else mark


def paper_label(family: str) -> str:
    return PAPER_LABELS.get(family, family)


def label_lines(px: int) -> int:
    """How many text lines a tile's label takes at this width (narrow tiles put metrics one a line)."""
    return 3 if px >= 20 else 4 if px >= 13 else 5


def tile_layout(width: int, height: int, n_tiles: int, gap: int = 1, extra: int = 0) -> tuple[int, int]:
    """(tile side in px, tiles per row) that best fill width x height cells; more rows when narrow."""
    best = (MIN_TILE, max(1, min(n_tiles, (width + gap) // (MIN_TILE + gap))))
    for cols in range(1, n_tiles + 1):
        rows = math.ceil(n_tiles / cols)
        px = min(MAX_TILE, (width - (cols - 1) * gap) // cols)
        px -= px % 2
        while px >= MIN_TILE and rows * (px // 2 + label_lines(px) + extra) > height:
            px -= 2
        if px > best[0] or (px == best[0] and cols > best[1]):  # ties: fewer rows
            best = (px, cols)
    return best


def jet(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to uint8 RGB (..., 3) with the classic jet map."""
    x = np.clip(x, 0, 1)[..., None]
    rgb = np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0])), 0, 1)
    return (rgb * 255).astype(np.uint8)


def _anchored(points: list[tuple[int, int, int]]):
    """A colormap interpolated between evenly spaced RGB anchors."""
    anchors = np.array(points, dtype=np.float32)
    xs = np.linspace(0, 1, len(points))

    def cmap(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0, 1)
        return np.stack([np.interp(x, xs, anchors[:, k]) for k in range(3)], -1).astype(np.uint8)
    return cmap


COLORMAPS = {
    "jet": jet,
    "hot": _anchored([(0, 0, 0), (230, 0, 0), (255, 210, 0), (255, 255, 255)]),
    "viridis": _anchored([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]),
    "grey": _anchored([(0, 0, 0), (255, 255, 255)]),
}


@dataclass(frozen=True)
class Overlay:
    """How heatmap tiles are drawn: colormap, heat opacity, lesion outline, heatmap alone or over the slice."""

    colormap: str = "jet"
    opacity: float = OVERLAY_ALPHA
    outline: bool = True
    alone: bool = False
    mono: bool = False  # NO_COLOR: the outline dashed black and white, as green would grey into the heat's greys

    @property
    def outline_colour(self) -> str:
        return "dashed" if self.mono else "green"

    def describe(self) -> str:
        what = "heatmap alone" if self.alone else f"over slice {self.opacity:.0%}"
        return f"{self.colormap} · {what} · outline {'on' if self.outline else 'off'}"


def _grey(image: np.ndarray, px: int) -> np.ndarray:
    from PIL import Image  # here: the table's first paint needs none of PIL (~20 ms of start-up)

    img = Image.fromarray(np.ascontiguousarray(image)).resize((px, px), Image.BILINEAR)
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def _outline(mask: np.ndarray, px: int) -> np.ndarray:
    from PIL import Image

    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((px, px), Image.NEAREST)) > 127
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def _draw_outline(rgb: np.ndarray, mask: np.ndarray | None, px: int, overlay: Overlay) -> None:
    if not overlay.outline or mask is None or not mask.any():
        return
    edge = _outline(mask, px)
    if not overlay.mono:
        rgb[edge] = MASK_RGB
        return
    ys, xs = np.nonzero(edge)  # alternate black and white pixels: one of them stands out from any grey
    rgb[ys, xs] = np.where(((xs + ys) % 2 == 0)[:, None], 255.0, 0.0)


def input_tile(image: np.ndarray, mask: np.ndarray | None, px: int, overlay: Overlay = Overlay()) -> Image.Image:
    """The slice at px x px, with the lesion outline drawn (green, or dashed) when there is a mask."""
    from PIL import Image

    rgb = _grey(image, px)
    _draw_outline(rgb, mask, px, overlay)
    return Image.fromarray(rgb.astype(np.uint8))


def heatmap_tile(image: np.ndarray, heatmap: np.ndarray | None, px: int, overlay: Overlay = Overlay(),
                 mask: np.ndarray | None = None) -> Image.Image:
    """The CAM upsampled smoothly to px, min-max normalised, coloured and blended over the slice."""
    from PIL import Image

    grey = _grey(image, px)
    if heatmap is None:
        return Image.fromarray((grey * 0.4).astype(np.uint8))  # dimmed: no map stored yet
    up = np.asarray(Image.fromarray(np.nan_to_num(heatmap).astype(np.float32), mode="F")
                    .resize((px, px), Image.BICUBIC), dtype=np.float32)
    lo, hi = float(up.min()), float(up.max())
    norm = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
    heat = COLORMAPS.get(overlay.colormap, jet)(norm).astype(np.float32)
    alpha = 1.0 if overlay.alone else overlay.opacity
    rgb = (1 - alpha) * grey + alpha * heat
    _draw_outline(rgb, mask, px, overlay)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def metric_lines(values: dict[str, float | None], px: int) -> list[str]:
    """Faith, LocAcc and Consist of one tile, packed into the label's last lines."""
    parts = [f"{k} {fmt_metric(values.get(m), 0)}" for k, m in (("F", "faith"), ("L", "locacc"), ("C", "consist"))]
    n = label_lines(px)
    if n == 3:
        return [" ".join(parts)]
    if n == 4:
        return [" ".join(parts[:2]), parts[2]]
    return parts
