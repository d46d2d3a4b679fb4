"""Explorer speed on synthetic caches: first paint, key-press overhead, re-sort/filter, memory.

    .venv/bin/python benchmarks/explorer_speed.py [--sizes 10000,100000] [--dir /tmp/gradfaith-bench]

Builds the caches once (no models run; store/synthetic.py) and reuses them. Prints figures and
ratios, asserts nothing. First paint is measured in a fresh subprocess per size, from interpreter
start (the command) to the app's first refresh with the table on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_PAINT = r"""
import time, sys
t0 = float(sys.argv[2])
from gradfaith_tui.tui.app import make_app
from gradfaith_tui.tui.widgets.case_table import CaseTable
app = make_app(sys.argv[1])
async def main():
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.query_one(CaseTable)
        assert table.render_line(1).cell_length > 0
        t1 = app.first_paint_at
        await app.workers.wait_for_complete()
        await pilot.pause()
        import resource
        print(f"{t1 - t0:.3f} {time.time() - t0:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
import asyncio; asyncio.run(main())
"""


def cache_for(base: Path, n: int) -> Path:
    from gradfaith_tui.store.synthetic import build_synthetic_cache

    root = base / str(n)
    if not (root / "audit.sqlite").is_file():
        t = time.perf_counter()
        build_synthetic_cache(root, n)
        print(f"  built {n:,}-case cache in {time.perf_counter() - t:.1f} s")
    return root


def first_paint(root: Path) -> tuple[float, float, float]:
    out = subprocess.run([sys.executable, "-c", FIRST_PAINT, str(root), repr(time.time())], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


async def key_overhead(root: Path, presses: int = 30) -> tuple[float, float]:
    """Median ms per 'j' press: the explorer (cursor move + every heatmap repainted) vs an empty app."""
    from textual.app import App

    from gradfaith_tui.tui.app import make_app
    from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel

    class Empty(App[None]):
        pass

    async def measure(app, wait_render: bool) -> float:
        times = []
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            for _ in range(presses):
                t = time.perf_counter()
                await pilot.press("j")
                if wait_render:
                    panel = app.query_one(HeatmapPanel)
                    while panel._rendered_idx != panel.case_idx:
                        await asyncio.sleep(0.001)
                times.append(time.perf_counter() - t)
        times.sort()
        return times[len(times) // 2] * 1000

    empty = await measure(Empty(), False)
    explorer = await measure(make_app(root), True)
    return empty, explorer


def sort_filter(root: Path) -> dict[str, float]:
    from gradfaith_tui.config import CLASS_NAMES  # noqa: F401
    from gradfaith_tui.store.arrays import Filter
    from gradfaith_tui.store.cache import CacheReader
    from gradfaith_tui.tui.source import CaseSource, ViewSpec

    reader = CacheReader(root)
    src = CaseSource(reader)
    out = {}
    t = time.perf_counter()
    src.warm()
    out["read sort columns once (background, after first paint)"] = time.perf_counter() - t
    for label, view in (("sort by worst Faith", ViewSpec("faith")), ("sort by M3 LocAcc, descending", ViewSpec("locacc", 2, True)),
                        ("sort by most wrong", ViewSpec("wrong")),
                        ("filter true Malignant + any wrong", ViewSpec("faith", filter=Filter(true_class=2, correct=False))),
                        ("filter id search 'case (12'", ViewSpec("faith", filter=Filter(search="case (12"))),
                        ("re-sort by worst Faith (cached)", ViewSpec("faith"))):
        t = time.perf_counter()
        src.compute(view)
        out[label] = time.perf_counter() - t
    src.close()
    reader.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dir", default="/tmp/gradfaith-bench")
    args = ap.parse_args()
    base = Path(args.dir)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"\n{n:,} cases x 5 models")
        root = cache_for(base, n)
        paints = sorted(first_paint(root) for _ in range(3))
        table, full, rss = paints[1]
        print(f"  command to first paint (table): {table:.2f} s   (heatmaps and sort columns ready: {full:.2f} s)")
        print(f"  explorer peak RSS (a fresh process, sort columns read): {rss:.0f} MB")
        for label, s in sort_filter(root).items():
            print(f"  {label:<55} {s * 1000:7.1f} ms")
        empty, explorer = asyncio.run(key_overhead(root))
        print(f"  key 'j', median of 30: empty Textual app {empty:.1f} ms, explorer (cursor + all heatmaps) "
              f"{explorer:.1f} ms, overhead {explorer - empty:+.1f} ms ({explorer / empty:.2f}x)")


if __name__ == "__main__":
    main()
