"""Explorer speed on synthetic caches: first paint, key-press overhead, re-sort/filter, memory.

    .venv/bin/python benchmarks/explorer_speed.py [--sizes 10000,100000] [--dir /tmp/gradfaith-bench]

Builds the caches once (no models run; store/synthetic.py) and reuses them. Prints figures and
ratios, asserts nothing. First paint runs the real command in a pseudo-terminal (120x40), from the
fork to the table header (and the sorted view's status line) appearing in its output. The key-press
figure uses Textual's Pilot for both apps: each press waits for idle in 20 ms windows (an empty app's
press takes two), so the explorer's overhead moves in steps of ~20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTLE_S = 3.0  # after the first paint: the background column read (~1.6 s at 100k) and the first heatmaps finish


def first_paint(root: Path, cols: int = 120, rows: int = 40) -> tuple[float, float, float]:
    """The real command in a pseudo-terminal: `python -m gradfaith_tui explore --cache ROOT` (CLI, typer,
    Textual's terminal driver and all). Returns (s to the table header on screen, s to the sorted view's
    status line, peak RSS in MB once everything settled); then presses q."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    t0 = time.time()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command as a user types it
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "gradfaith_tui", "explore", "--cache", str(root)])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    buf, header, status = b"", None, None
    while status is None and time.time() - t0 < 30:
        if select.select([fd], [], [], 0.05)[0]:
            buf += os.read(fd, 1 << 16)
            if header is None and b"Faith" in buf:
                header = time.time() - t0
            if b"Sort:" in buf and b"Faith" in buf:
                status = time.time() - t0
    end = time.time() + SETTLE_S
    while time.time() < end:  # keep draining the pty, or the app blocks writing to it
        if select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 1 << 16)
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    os.write(fd, b"q")
    end = time.time() + 10
    while time.time() < end and not os.waitpid(pid, os.WNOHANG)[0]:
        try:
            if select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 1 << 16)
        except OSError:
            pass
    os.close(fd)
    return header or float("nan"), status or float("nan"), hwm


def cache_for(base: Path, n: int) -> Path:
    from gradfaith_tui.store.synthetic import build_synthetic_cache

    root = base / str(n)
    if not (root / "audit.sqlite").is_file():
        t = time.perf_counter()
        build_synthetic_cache(root, n)
        print(f"  built {n:,}-case cache in {time.perf_counter() - t:.1f} s")
    return root


async def key_overhead(root: Path, presses: int = 30) -> tuple[float, float, float, float]:
    """Median ms per 'j' press, and process CPU ms per press (both threads): the explorer (cursor move +
    every heatmap repainted) vs an empty app, through the same Pilot calls."""
    from textual.app import App

    from gradfaith_tui.tui.app import make_app
    from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel

    class Empty(App[None]):
        pass

    async def measure(app, wait_render: bool) -> tuple[float, float]:
        times = []
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            cpu = time.process_time()
            for _ in range(presses):
                t = time.perf_counter()
                await pilot.press("j")
                if wait_render:
                    panel = app.query_one(HeatmapPanel)
                    while panel._rendered_idx != panel.case_idx:
                        await asyncio.sleep(0.001)
                times.append(time.perf_counter() - t)
            cpu = (time.process_time() - cpu) / presses * 1000
        times.sort()
        return times[len(times) // 2] * 1000, cpu

    empty, empty_cpu = await measure(Empty(), False)
    explorer, explorer_cpu = await measure(make_app(root), True)
    return empty, explorer, empty_cpu, explorer_cpu


def sort_filter(root: Path) -> dict[str, float]:
    from gradfaith_tui.config import CLASS_NAMES  # noqa: F401
    from gradfaith_tui.store.arrays import Filter
    from gradfaith_tui.store.reader import CacheReader
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
        paints = [first_paint(root) for _ in range(3)]
        table, status, rss = (sorted(p[k] for p in paints)[1] for k in range(3))
        print(f"  command to first paint, median of 3 (pty, `python -m gradfaith_tui explore`): table {table:.2f} s, "
              f"sorted view {status:.2f} s   (runs: {', '.join(f'{p[0]:.2f}' for p in paints)})")
        print(f"  explorer peak RSS {SETTLE_S:.0f} s after first paint (sort columns, suspects, heatmaps read): "
              f"{rss:.0f} MB (runs: {', '.join(f'{p[2]:.0f}' for p in paints)})")
        for label, s in sort_filter(root).items():
            print(f"  {label:<55} {s * 1000:7.1f} ms")
        empty, explorer, empty_cpu, explorer_cpu = asyncio.run(key_overhead(root))
        print(f"  key 'j', median of 30: empty Textual app {empty:.1f} ms, explorer (cursor + all heatmaps) "
              f"{explorer:.1f} ms, overhead {explorer - empty:+.1f} ms ({explorer / empty:.2f}x)")
        print(f"  key 'j', process CPU per press: empty app {empty_cpu:.1f} ms, explorer {explorer_cpu:.1f} ms "
              f"({explorer_cpu - empty_cpu:+.1f} ms)")


if __name__ == "__main__":
    main()
