"""Heatmap tiles at pixel resolution through textual-image (Kitty graphics protocol or Sixel).

Only used with `explore --graphics kitty|sixel|auto` (when a protocol is detected); textual_image is
imported by `graphics_widget` alone, before the app starts: it queries the terminal, which is no longer
possible once Textual runs, and the default half-block explorer never pays for the import.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Container, Vertical
from textual.widgets import Static

MODES = ("auto", "halfblock", "kitty", "sixel")


def graphics_widget(mode: str):
    """The textual-image widget class for a mode, or None for half blocks (also when auto finds no protocol)."""
    if mode not in MODES:
        raise ValueError(f"--graphics: '{mode}' (choose from {', '.join(MODES)})")
    if mode == "halfblock":
        return None
    import textual_image.renderable as renderables
    import textual_image.widget as widgets

    if mode == "kitty":
        return widgets.TGPImage
    if mode == "sixel":
        return widgets.SixelImage
    if renderables.Image is renderables.TGPImage:
        return widgets.TGPImage
    if renderables.Image is renderables.SixelImage:
        return widgets.SixelImage
    return None


class PixelTiles(Container):
    """A grid of (image, label) tiles; rebuilt for each case."""

    DEFAULT_CSS = """
    PixelTiles { layout: grid; height: auto; grid-gutter: 0 1; grid-rows: auto; }
    PixelTiles > Vertical { height: auto; width: auto; }
    """

    def __init__(self, image_cls, **kwargs):
        super().__init__(**kwargs)
        self.image_cls = image_cls

    async def show(self, images: list, labels: list[Text], px: int, cols: int) -> None:
        self.styles.grid_size_columns = cols
        self.styles.grid_columns = str(px)
        await self.remove_children()
        tiles = []
        for image, label in zip(images, labels):
            widget = self.image_cls(image)
            widget.styles.width, widget.styles.height = px, px // 2
            text = Static(label)
            text.styles.width = px
            tiles.append(Vertical(widget, text))
        await self.mount_all(tiles)
