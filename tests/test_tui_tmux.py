"""The real `gradfaith-tui explore` command in a detached tmux session of a fixed size, driven by keys.

What the user sees is read back with `tmux capture-pane -p` and polled until the expected text shows
(no fixed sleeps). Each test uses its own tmux server (`-L`), killed in a finally. Skipped without tmux.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gradfaith_tui.store.arrays import CaseArrays
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.render import file_name, short_case_id

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One detached session on a private tmux server."""

    def __init__(self, width: int, height: int, command: list[str], colours: int = 256):
        self.socket = f"gft-{uuid.uuid4().hex[:10]}"
        self.width, self.height = width, height
        env = {"PYTHONPATH": str(ROOT), "TERM": "screen-256color" if colours == 256 else "screen"}
        # The exit code goes to a file: under load tmux sometimes marks the pane dead without recording a status.
        self.exit_file = Path(tempfile.mkdtemp()) / "exit"
        shell = (" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command)
                 + f"; echo $? > {shlex.quote(str(self.exit_file))}")
        self.tmux("-f", "/dev/null", *(["-2"] if colours == 256 else []), "new-session", "-d", "-s", "t",
                  "-x", str(width), "-y", str(height), shell, ";", "set-option", "-t", "t", "remain-on-exit", "on")
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def tmux(self, *args: str) -> str:
        # The environment from os.environ, not the process's own: pytest imports readline, whose start-up sets
        # COLUMNS=80 and LINES=24 there (not in os.environ), and the app would size itself by them, not the pane.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              env=env).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", "t", k)

    def wait_for(self, check, what: str, timeout: float = 30.0) -> str:
        """Poll the screen until check(screen) is true; fail showing the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def wait_text(self, text: str, timeout: float = 30.0) -> str:
        return self.wait_for(lambda s: text in s, repr(text), timeout)

    def exit_status(self, timeout: float = 60.0) -> int:  # a loaded CI machine can take a while to tear down
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.exit_file.read_text().strip() if self.exit_file.exists() else ""
            if text:
                return int(text)
            time.sleep(0.1)
        pytest.fail(f"the explorer did not exit; the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        if getattr(self, "socket_path", ""):
            Path(self.socket_path).unlink(missing_ok=True)


def selected_line(screen: str) -> str:
    return next(line for line in screen.splitlines() if line.startswith("▶"))


def title_line(screen: str) -> str:
    """The heatmap panel's title ("<case id> · true <class> · ..."): under the status bar on a narrow
    terminal, beside the table's header on a wide one."""
    return next((line for line in screen.splitlines() if " · true " in line), "")


def expected_ids(root: Path) -> list[str]:
    reader = CacheReader(root)
    arrays = CaseArrays(reader.con, reader.columns, reader.n_cases)
    order = arrays.order("faith")
    ids = {r.idx: r.case_id for r in reader.rows([int(i) for i in order[:2]])}
    reader.close()
    return [ids[int(i)] for i in order[:2]]


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_explore_in_tmux(tmp_path, size):
    cache = build_synthetic_cache(tmp_path / "cache", 30)
    first, second = expected_ids(cache)
    term = Tmux(*size, [sys.executable, "-m", "gradfaith_tui", "explore", "--cache", str(cache)])
    try:
        screen = term.wait_for(lambda s: "Sort: case id" in s and "? Help" in s, "the first screen")
        assert "30 test cases" in screen and "? Help" in screen

        term.keys("f")
        screen = term.wait_text("Sort: lowest Faith")
        assert "Faith↑" in screen  # the sort indicator in the header
        term.wait_for(lambda s: file_name(first) in title_line(s), f"{first} in the heatmap title")

        term.keys("j")
        screen = term.wait_for(lambda s: file_name(second) in title_line(s), f"{second} in the heatmap title")
        assert short_case_id(second, 20)[:12] in selected_line(screen)
        assert "case 2/30" in screen

        term.keys("?")
        # both: a capture can land while the help is half drawn (seen once on a busy 2-core VM)
        screen = term.wait_for(lambda s: "Keys: Move" in s and "reverse" in s, "the help with its sort keys")
        assert "Faith" in screen
        term.keys("Escape")
        term.wait_for(lambda s: "Keys: Move" not in s and "Sort: lowest Faith" in s, "the help to close")

        term.keys("1")
        # the Fl column: the row's end on a narrow terminal, before the heatmap tiles on a wide one; all three
        # together, since on a loaded machine a capture can land between the table's and the title's redraw
        term.wait_for(lambda s: "⚑ unfaithful" in title_line(s) and "1 flagged" in s
                      and re.search(r" U ?⚠?(\s|$)", selected_line(s).rstrip()) is not None,
                      "the flag in the heatmap title, the Fl column and the status line")

        con = sqlite3.connect(cache / "audit.sqlite")
        rows = con.execute("SELECT c.case_id, f.category, f.undone FROM flags f JOIN cases c USING (idx)").fetchall()
        con.close()
        assert rows == [(second, "unfaithful", 0)]

        term.keys("q")
        assert term.exit_status() == 0
    finally:
        term.kill()
