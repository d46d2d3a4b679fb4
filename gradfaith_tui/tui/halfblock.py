"""Half-block pixel strips: two image rows per terminal line ("▄": top pixel as background, bottom as
foreground), built straight from a numpy array. rich-pixels does the same per pixel in Python and
costs ~3 ms a 16x16 tile; this is several times faster and lays tiles out without a Rich Table."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

_CONSOLE = Console(width=400, color_system="truecolor", force_terminal=True, legacy_windows=False)
# For Rich's plain (style None) segments: Textual's monochrome filter (NO_COLOR) cannot take None.
PLAIN = Style()


def styled(segments) -> list[Segment]:
    """Segments with PLAIN where Rich left the style None."""
    return [Segment(text, style or PLAIN, control) for text, style, control in segments]


@lru_cache(maxsize=1 << 15)
def _color(rgb: int) -> Color:
    return Color.from_rgb(rgb >> 16, (rgb >> 8) & 255, rgb & 255)


@lru_cache(maxsize=1 << 17)
def _style(top: int, bottom: int) -> Style:
    return Style(bgcolor=_color(top), color=_color(bottom))


def pixel_strips(rgb: np.ndarray) -> list[Strip]:
    """(H, W, 3) uint8 to H/2 strips of W cells (an odd last row gets a black bottom)."""
    a = np.asarray(rgb, dtype=np.uint32) & 0xF8  # 5 bits a channel: invisible in half-blocks, and most
    # cells then hit the style cache (building a Rich Style is the slow part)
    if a.shape[0] % 2:
        a = np.concatenate([a, np.zeros((1, *a.shape[1:]), np.uint32)])
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    strips = []
    for y in range(0, packed.shape[0], 2):
        segs = []
        top, bottom = packed[y].tolist(), packed[y + 1].tolist()
        run, prev = 0, None
        for t, b in zip(top, bottom):
            if (t, b) == prev:
                run += 1
                continue
            if prev is not None:
                segs.append(Segment("▄" * run, _style(*prev)))
            prev, run = (t, b), 1
        if prev is not None:
            segs.append(Segment("▄" * run, _style(*prev)))
        strips.append(Strip(segs, a.shape[1]))
    return strips


def text_strips(text: Text, width: int) -> list[Strip]:
    """A (multi-line, no-wrap) label as strips exactly `width` cells wide, each line cut with an ellipsis
    (line by line: a third of the cost of Console.render_lines, which wraps and pads)."""
    out = []
    for line in text.split("\n", allow_blank=True):
        line.truncate(width, overflow="ellipsis")
        out.append(Strip(styled(line.render(_CONSOLE))).adjust_cell_length(width, PLAIN))
    return out


def grid_strips(tiles: list[list[Strip]], cols: int, px: int, gap: int = 1) -> list[Strip]:
    """Tiles (each a list of px-wide strips of equal height) in rows of `cols`, a gap between them."""
    out: list[Strip] = []
    blank, spacer = Strip.blank(px, PLAIN), Strip.blank(gap, PLAIN)
    for start in range(0, len(tiles), cols):
        row = tiles[start:start + cols]
        height = max(len(t) for t in row)
        for y in range(height):
            parts = []
            for k, t in enumerate(row):
                if k:
                    parts.append(spacer)
                parts.append(t[y] if y < len(t) else blank)
            out.append(Strip.join(parts))
    return out
