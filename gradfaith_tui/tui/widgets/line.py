"""A one-line text bar drawn through the Line API: cheaper than a Static, which re-renders its content
through the full visual pipeline on every update (the status line changes on every key press)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

_CONSOLE = Console(width=1000, color_system="truecolor", force_terminal=True, legacy_windows=False)


class LineBar(Widget):
    DEFAULT_CSS = "LineBar { height: 1; }"

    def __init__(self, text: Text | str = "", **kwargs):
        super().__init__(**kwargs)
        self._text = Text(text) if isinstance(text, str) else text

    @property
    def content(self) -> Text:
        return self._text

    def update(self, text: Text | str, layout: bool = False) -> None:
        self._text = Text(text) if isinstance(text, str) else text
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y != 0:
            return Strip.blank(width, self.rich_style)
        text = self._text.copy()
        text.truncate(width, overflow="ellipsis")
        segs = list(text.render(_CONSOLE))
        return Strip(segs).adjust_cell_length(width).apply_style(self.rich_style)
