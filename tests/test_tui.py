"""The explorer on a synthetic cache: sorting, cursor, heatmap panel, help, quitting, small screens."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import HelpScreen, make_app
from gradfaith_tui.tui.render import file_name, short_case_id, tile_layout
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return build_synthetic_cache(tmp_path_factory.mktemp("synthetic"), 30)


@pytest.fixture(scope="module")
def all_rows(synthetic):
    reader = CacheReader(synthetic)
    rows = {r.idx: r for r in reader.rows(range(reader.n_cases))}
    reader.close()
    return rows


async def settle(pilot) -> None:
    """Let sort and render workers finish and their results reach the widgets."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def line_text(table: CaseTable, y: int) -> str:
    return "".join(seg.text for seg in table.render_line(y))


def panel_title(app) -> str:
    return str(app.query_one("#case-title").content)


def test_synthetic_cache_is_plausible(synthetic, all_rows):
    reader = CacheReader(synthetic)
    assert reader.n_cases == 30 and len(reader.columns) == 5
    no_mask = [r for r in all_rows.values() if not r.has_mask]
    assert 0 < len(no_mask) < 30
    assert all(r.worst("locacc") is None for r in no_mask)  # NULL, never 0
    assert all(r.worst("consist") is not None for r in all_rows.values())
    assert reader.heatmap(reader.columns[-1].expl_id, 0).shape == (8, 8)
    assert reader.mask(no_mask[0].idx).sum() == 0
    reader.close()


def test_sort_cursor_heatmaps_reverse(synthetic, all_rows):
    async def main():
        app = make_app(synthetic)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            table = app.query_one(CaseTable)
            assert "resnet10t(output_stride=16) for ResNet-50" in str(app.query_one("#models").content)

            await pilot.press("f")
            await settle(pilot)
            lowest = min(r.worst("faith") for r in all_rows.values())
            first = all_rows[int(table.source.order[0])]
            assert first.worst("faith") == lowest
            assert short_case_id(first.case_id, 20) in line_text(table, 1)
            assert "Faith" in str(app.query_one("#status").content)
            assert file_name(first.case_id) in panel_title(app)

            await pilot.press("down")
            await settle(pilot)
            second = all_rows[int(table.source.order[1])]
            assert table.cursor == 1 and app.query_one(HeatmapPanel).case_idx == second.idx
            assert file_name(second.case_id) in panel_title(app)

            await pilot.press("l")
            await settle(pilot)
            order = [all_rows[int(i)] for i in table.source.order]
            with_mask = [r.worst("locacc") for r in order if r.has_mask]
            assert with_mask == sorted(with_mask)
            n_mask = len(with_mask)
            assert all(r.has_mask for r in order[:n_mask]) and not any(r.has_mask for r in order[n_mask:])

            before = table.source.order.copy()
            await pilot.press("r")
            await settle(pilot)
            order = [all_rows[int(i)] for i in table.source.order]
            assert [r.worst("locacc") for r in order[:n_mask]] == sorted(with_mask, reverse=True)
            assert not any(r.has_mask for r in order[n_mask:])  # missing values stay last when descending
            assert "highest LocAcc" in str(app.query_one("#status").content)
            assert "LocAcc↓" in line_text(table, 0)

            await pilot.press("G")
            await settle(pilot)
            assert table.cursor == len(before) - 1
            await pilot.press("g", "j", "j", "k")
            await settle(pilot)
            assert table.cursor == 1

    asyncio.run(main())


def test_help_and_quit(synthetic):
    async def main():
        app = make_app(synthetic)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            help_text = str(app.screen.query_one("#help-text").content)
            assert all(m.label in help_text for m in METRICS.values()) and "reverse" in help_text
            assert "vit_tiny_patch16_224(patch_size=8, depth=6) for ViT-B/16" in help_text
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0 and not app.is_running

    asyncio.run(main())


def test_small_screen_stacks(synthetic, all_rows):
    async def main():
        app = make_app(synthetic)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.query_one("#main").has_class("narrow")
            table, panel = app.query_one(CaseTable), app.query_one(HeatmapPanel)
            assert table.region.height >= 5 and panel.region.height >= 10
            assert panel.region.y >= table.region.bottom  # stacked, not side by side
            assert table.region.right <= 80 and panel.region.right <= 80
            first = all_rows[int(table.source.order[0])]
            assert file_name(first.case_id) in panel_title(app)
            header = line_text(table, 0)
            assert "Faith" in header and "LocAcc" in header and "Consist" in header
            await pilot.press("w")
            await settle(pilot)
            wrong = [all_rows[int(i)].n_wrong() for i in table.source.order]
            assert wrong == sorted(wrong, reverse=True)

    asyncio.run(main())


def test_tile_layout_wraps_when_narrow():
    px_wide, cols_wide = tile_layout(120, 30, 6)
    px_narrow, cols_narrow = tile_layout(30, 60, 6)
    assert cols_narrow < cols_wide and px_narrow >= 8
    assert cols_wide * px_wide <= 120


def test_explorer_does_not_import_torch():
    code = ("import sys, gradfaith_tui.tui.app; bad = [m for m in ('torch', 'timm', 'matplotlib', "
            "'pytorch_grad_cam', 'gradfaith_tui.pipeline') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
