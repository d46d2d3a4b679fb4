"""Shown instead of the explorer while the terminal is below its smallest usable size (tui/terminal.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from gradfaith_tui.tui.terminal import too_small_message


class TooSmallScreen(Screen[None]):
    """One centred message; the app pops it when the terminal is large enough again."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; overflow: hidden hidden; }
    #too-small { width: auto; max-width: 100%; height: auto; text-align: center; }
    """

    def __init__(self, width: int, height: int):
        super().__init__()
        self.message = too_small_message(width, height)

    def compose(self) -> ComposeResult:
        yield Static(self.message, id="too-small")

    def resized(self, width: int, height: int) -> None:
        self.message = too_small_message(width, height)
        self.query_one("#too-small", Static).update(self.message)
