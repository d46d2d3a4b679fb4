"""Snapshots (pytest-textual-snapshot) of the explorer's main screens at 80x24 and 160x48.

Deterministic: a fixed-seed synthetic cache, a fixed cache name in the title, and every worker
finished before the capture. Update with `pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import make_app

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(scope="module")
def snap_cache(tmp_path_factory) -> Path:
    return build_synthetic_cache(tmp_path_factory.mktemp("snap"), 30, seed=0)


async def _settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _keys(*keys):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        for k in keys:
            await pilot.press(k)
            await _settle(pilot)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen,keys", [("cases", ("f", "j")), ("help", ("question_mark",)),
                                         ("zoom", ("enter",)), ("models", ("M",))])
def test_snapshot(snap_compare, snap_cache, size, screen, keys):
    app = make_app(snap_cache, name="data/cache")
    assert snap_compare(app, terminal_size=size, run_before=_keys(*keys))
