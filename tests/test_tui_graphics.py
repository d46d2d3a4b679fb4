"""`explore --graphics`: half blocks by default, textual-image widgets on request, textual_image imported lazily.

A real Kitty or Sixel terminal is not available here: the kitty/sixel paths are checked up to the widget
class chosen, and the pixel-tile layout is driven with textual-image's half-cell widget, which renders headless.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.render import file_name
from gradfaith_tui.tui.app import ExplorerApp, make_app
from gradfaith_tui.tui.widgets.heatmaps import TileGrid
from gradfaith_tui.tui.widgets.pixel_tiles import PixelTiles, graphics_widget

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return build_synthetic_cache(tmp_path_factory.mktemp("graphics"), 12)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_cli_accepts_graphics_and_defaults_to_halfblock(cache, monkeypatch):
    import gradfaith_tui.tui.app as tui_app
    from gradfaith_tui.cli import app as cli

    seen = []
    monkeypatch.setattr(tui_app, "run_explorer", lambda c, **kw: seen.append(kw.get("graphics")))
    runner = CliRunner()
    for args, expected in (([], "halfblock"), (["--graphics", "kitty"], "kitty"), (["--graphics", "sixel"], "sixel"),
                           (["--graphics", "auto"], "auto")):
        result = runner.invoke(cli, ["explore", "--cache", str(cache), *args])
        assert result.exit_code == 0, result.output
        assert seen[-1] == expected
    result = runner.invoke(cli, ["explore", "--cache", str(cache), "--graphics", "ascii"])
    assert "--graphics: 'ascii'" in str(result.exception)  # main() prints it as one line, exit code 2


def test_widget_classes():
    import textual_image.widget as w

    assert graphics_widget("halfblock") is None
    assert graphics_widget("kitty") is w.TGPImage and graphics_widget("sixel") is w.SixelImage
    assert graphics_widget("auto") is None  # not a terminal here: falls back to half blocks
    with pytest.raises(ValueError):
        graphics_widget("png")


def test_default_app_uses_halfblock_and_never_imports_textual_image(cache):
    code = ("import sys, gradfaith_tui.cli, gradfaith_tui.tui.app; "
            "assert 'textual_image' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})

    async def main():
        app = make_app(cache)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert app.graphics == "halfblock"
            assert isinstance(app.query_one("#tiles"), TileGrid) and app.query_one("#tiles").strips
    asyncio.run(main())


def test_pixel_tiles_layout(cache):
    from gradfaith_tui.store.reader import CacheReader
    from textual_image.widget import HalfcellImage

    async def main():
        reader = CacheReader(cache)
        app = ExplorerApp(reader, image_cls=HalfcellImage)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            tiles = app.query_one("#tiles")
            assert isinstance(tiles, PixelTiles) and app.graphics == "HalfcellImage"
            images = list(tiles.query(HalfcellImage))
            assert len(images) == 6 and images[0].image.size[0] >= 4 * images[0].size.width
            assert all(im.size.width >= 8 and im.size.height >= 4 for im in images)
            await pilot.press("j")
            await settle(pilot)
            assert file_name(app.source.row_at(1).case_id) in str(app.query_one("#case-title").content)
            assert len(list(tiles.query(HalfcellImage))) == 6
        reader.close()
    asyncio.run(main())
