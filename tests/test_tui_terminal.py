"""What the explorer does with the terminal it is given: too small, NO_COLOR, not UTF-8, TERM=dumb, 16 colours,
and image protocols asked for inside tmux."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.color import ColorSystem
from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from textual.color import Color

import gradfaith_tui.tui.app as tui_app
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import make_app, run_explorer
from gradfaith_tui.tui.render import Overlay, heatmap_tile
from gradfaith_tui.tui.screens.too_small import TooSmallScreen
from gradfaith_tui.tui.terminal import MIN_HEIGHT, MIN_WIDTH
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return build_synthetic_cache(tmp_path_factory.mktemp("terminal"), 30)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def run(body, cache, size=(120, 40), **kwargs):
    async def main():
        app = make_app(cache, **kwargs)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(app, pilot)
    asyncio.run(main())


def shown_text(app) -> str:
    return str(app.screen.query_one("#too-small").content)


# --- the smallest usable size ------------------------------------------------------------------------------
def test_below_the_minimum_size_one_message_replaces_the_layout_until_resized_back(cache):
    async def body(app, pilot):
        assert isinstance(app.screen, TooSmallScreen)
        assert shown_text(app).startswith(f"Terminal too small: 40x12; the explorer needs at least "
                                          f"{MIN_WIDTH}x{MIN_HEIGHT}")
        assert "gradfaith-tui report --terminal" in shown_text(app)
        await pilot.press("f", "question_mark", "M")  # nothing acts behind the message
        await settle(pilot)
        assert app.view.key == "case" and len(app.screen_stack) == 2

        await pilot.resize_terminal(20, 5)
        await settle(pilot)
        assert isinstance(app.screen, TooSmallScreen) and "20x5" in shown_text(app) and len(app.screen_stack) == 2

        await pilot.resize_terminal(MIN_WIDTH, MIN_HEIGHT)
        await settle(pilot)
        table = app.query_one(CaseTable)
        assert len(app.screen_stack) == 1 and table.region.height >= 5  # the header and four rows
        assert "Fl" in "".join(s.text for s in table.render_line(0))  # every column fits

        await pilot.press("question_mark")  # a screen open when it shrinks is there again after
        await pilot.resize_terminal(MIN_WIDTH - 1, MIN_HEIGHT)
        await settle(pilot)
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(100, 30)
        await settle(pilot)
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "q")
        await pilot.pause()
        assert app.return_code == 0
    run(body, cache, size=(40, 12))


# --- NO_COLOR ----------------------------------------------------------------------------------------------
def _grey(rgb: np.ndarray) -> np.ndarray:
    """What Textual's monochrome filter makes of each colour."""
    return rgb.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722])


def test_no_color_greys_the_heat_and_dashes_the_outline(cache, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def body(app, pilot):
        assert app.overlay.colormap == "grey" and app.overlay.mono
        assert app.query_one(HeatmapPanel).overlay == app.overlay
        assert "mask: dashed" in "".join(s.text for s in app.query_one("#tiles").strips)
    run(body, cache)

    async def chosen(app, pilot):  # a colormap asked for is kept
        assert app.overlay.colormap == "hot" and app.overlay.mono
    run(chosen, cache, colormap="hot")

    reader = CacheReader(cache)
    idx = max(range(reader.n_cases), key=lambda i: reader.mask(i).sum())
    image, mask, heat = reader.image(idx), reader.mask(idx), reader.heatmap(reader.columns[0].expl_id, idx)
    reader.close()
    plain = _grey(np.asarray(heatmap_tile(image, heat, 48, Overlay(colormap="grey", outline=False), mask)))
    drawn = _grey(np.asarray(heatmap_tile(image, heat, 48, Overlay(colormap="grey", mono=True), mask)))
    edge = np.abs(drawn - plain) > 1
    # on the hottest place (the lesion's) as anywhere: half the outline's pixels are far from what lies under them
    assert edge.sum() > 10 and np.mean(np.abs(drawn - plain)[edge] > 100) > 0.4


def test_no_color_is_grey_by_default_only(cache, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)

    async def body(app, pilot):
        assert app.overlay == Overlay()  # jet, green outline
    run(body, cache)


# --- refusals before the app starts ------------------------------------------------------------------------
class FakeTerminal:
    def __init__(self, encoding: str = "utf-8"):
        self.encoding = encoding

    def isatty(self) -> bool:
        return True


@pytest.fixture()
def launch(cache, monkeypatch):
    """run_explorer in a UTF-8 terminal (stdin, stdout, and the stderr Textual draws on) but for the streams given
    other encodings; ExplorerApp.run records the app instead of running it. Streams are replaced here, in the test
    itself: pytest puts its own stdout back between a fixture and the test."""
    runs = []
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(tui_app.ExplorerApp, "run", lambda app: runs.append(app))

    def go(encodings: dict[str, str] | None = None, **kwargs):
        for name in ("stdin", "stdout", "__stderr__"):
            monkeypatch.setattr(sys, name, FakeTerminal((encodings or {}).get(name, "utf-8")))
        try:
            run_explorer(cache, **kwargs)
        finally:
            monkeypatch.undo()  # pytest's own streams back before it reports
        return runs
    go.cache = cache
    return go


def test_a_usable_terminal_starts_the_explorer(launch):
    started = launch()
    assert len(started) == 1 and started[0].notice is None


def test_term_dumb_is_refused_in_one_line(launch, monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    with pytest.raises(GradfaithError, match=r"TERM=dumb .*`gradfaith-tui report --cache .* --terminal`") as err:
        launch()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("stream", ["stdout", "__stderr__"])
def test_a_terminal_that_is_not_utf8_is_refused_in_one_line(launch, stream):
    named = stream.strip("_")
    with pytest.raises(GradfaithError, match=f"needs a UTF-8 terminal: {named} encoding is latin-1; set "
                                             f"LANG=C.UTF-8 or PYTHONIOENCODING=utf-8") as err:
        launch({stream: "latin-1"})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("graphics", ["kitty", "sixel"])
def test_an_image_protocol_inside_tmux_falls_back_to_half_blocks_with_a_notice(launch, monkeypatch, graphics):
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    app = launch(graphics=graphics)[0]
    assert app.graphics == "halfblock" and f"--graphics {graphics} does not work inside tmux" in app.notice

    async def body(shown, pilot):  # said on screen once it is up (the reader run_explorer used is closed)
        assert any("inside tmux" in str(n.message) for n in shown._notifications)
    run(body, launch.cache, notice=app.notice)


# --- 16 colours --------------------------------------------------------------------------------------------
def _contrast(a, b) -> float:
    """WCAG contrast ratio of two RGB triplets."""
    def lum(c):
        v = [x / 255 for x in c]
        v = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in v]
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_marks_under_the_cursor_stay_readable_in_16_colours(cache):
    """✓, ✗ and ⚠ on the cursor row, as a 16-colour terminal shows them (✗ was magenta on bright red)."""
    async def body(app, pilot):
        table, source = app.query_one(CaseTable), app.query_one(CaseTable).source
        pos = next(p for p in range(table.n_rows)
                   if 0 < source.row_at(p).n_wrong() < len(source.columns) and source.suspects(source.idx_at(p)))
        table.cursor = pos
        await settle(pilot)
        segments = list(table.render_line(pos - int(table.scroll_y) + 1))
        for line_filter in app.get_line_filters():  # as Textual sends it: ANSI colours through the theme
            segments = line_filter.apply(segments, Color(0, 0, 0))
        marks = [s for s in segments if s.text.strip() in ("✓", "✗", "⚠")]
        assert {s.text.strip() for s in marks} == {"✓", "✗", "⚠"}
        for mark in marks:
            fg, bg = (c.downgrade(ColorSystem.STANDARD).get_truecolor(DEFAULT_TERMINAL_THEME)
                      for c in (mark.style.color, mark.style.bgcolor))
            assert _contrast(fg, bg) >= 3, (mark.text, fg, bg)
    run(body, cache)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_real_command_refuses_term_dumb_and_latin1_in_tmux(cache):
    from tests.test_tui_tmux import Tmux

    for env, says in ((["TERM=dumb"], "TERM=dumb cannot show the full-screen explorer"),
                      (["PYTHONIOENCODING=latin-1"], "needs a UTF-8 terminal: stdout encoding is iso8859-1")):
        term = Tmux(300, 20, ["env", *env, sys.executable, "-m", "gradfaith_tui", "explore", "--cache", str(cache)])
        try:
            assert term.exit_status() == 2
            screen = term.tmux("capture-pane", "-p", "-S", "-100", "-t", "t")  # with the scrollback
            lines = [ln for ln in screen.splitlines() if ln.strip() and not ln.startswith("Pane is dead")]
            assert len(lines) == 1 and lines[0].startswith("gradfaith-tui: error: explore: ") and says in lines[0]
        finally:
            term.kill()
