"""One call that turns a cache into report files: the figures, then report.md and/or report.html.

Everything is written into a hidden folder inside --out first and moved into place only once all of it is
whole, so a full disk or a failed figure leaves the report already there as it was (and the error names
--out, never the hidden folder), never new figures beside an old report.md or a figure cut short. What is
in the way of a move (a folder named report.md, a file named figures) is found before anything moves.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from gradfaith_tui.errors import CacheError, GradfaithError
from gradfaith_tui.report import figures, html, markdown
from gradfaith_tui.report.build import FIGURES_DIR, Report, build
from gradfaith_tui.store.files import DAMAGED_DB
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.schema import DB_NAME

FORMATS = ("md", "html", "all")
DOCUMENTS = {"md": ("report.md",), "html": ("report.html",), "all": ("report.md", "report.html")}
KEPT = "a report already there was left as it was"


def write_report(reader: CacheReader, out: Path, fmt: str = "all") -> tuple[Report, list[Path]]:
    """Returns the report structure and the files written (figures included)."""
    out = Path(out)
    try:
        report = build(reader)  # before --out is made: a cache that cannot be read leaves no empty folder
    except sqlite3.DatabaseError as exc:  # damaged past the header the reader checked on opening
        raise CacheError(f"{reader.root / DB_NAME}: {DAMAGED_DB} ({exc}); rerun precompute into a new --cache "
                         f"folder") from None
    _check_out(out, fmt)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    except OSError as exc:
        raise GradfaithError(f"--out: cannot write the report into {out} ({exc.strerror or exc})") from None
    try:
        try:
            staged = figures.draw_all(report, reader, stage)  # always drawn: the HTML inlines them
            if fmt in ("md", "all"):
                staged.append(markdown.write(report, stage))
            if fmt in ("html", "all"):
                staged.append(html.write(report, stage))
            _check_out(out, fmt)  # again: the figures took a while
            paths = []
            for p in staged:  # renames within one file system: no space needed, each file whole
                dest = out / p.relative_to(stage)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
                paths.append(dest)
        except OSError as exc:
            raise GradfaithError(f"--out: cannot write the report into {out} ({exc.strerror or exc}); {KEPT}") from None
        stale = [f.file for f in report.figures if not f.written]  # an earlier report's figure of this folder
        stale += [name for name in DOCUMENTS["all"] if name not in DOCUMENTS[fmt]]  # the other format's, older
        for name in stale:
            if (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report, paths


def _check_out(out: Path, fmt: str) -> None:
    """Files or folders where the report's own must go: named, before any file moves."""
    if out.exists() and not out.is_dir():
        raise GradfaithError(f"--out: {out} is a file, not a folder; choose another --out")
    if (out / FIGURES_DIR).exists() and not (out / FIGURES_DIR).is_dir():
        raise GradfaithError(f"--out: {out / FIGURES_DIR} is a file where the report's figures go; move it away or "
                             f"choose another --out")
    for name in DOCUMENTS[fmt]:
        if (out / name).is_dir():
            raise GradfaithError(f"--out: {out / name} is a folder where the report's file goes; move it away or "
                                 f"choose another --out")
