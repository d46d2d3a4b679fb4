"""One call that turns a cache into report files: the figures, then report.md and/or report.html.

Everything is written into a hidden folder inside --out first and moved into place only once all of it is
whole, so a full disk or a failed figure leaves the report already there as it was (and the error names
the folder), never new figures beside an old report.md or a figure cut short.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.report import figures, html, markdown
from gradfaith_tui.report.build import Report, build
from gradfaith_tui.store.reader import CacheReader

FORMATS = ("md", "html", "all")


def write_report(reader: CacheReader, out: Path, fmt: str = "all") -> tuple[Report, list[Path]]:
    """Returns the report structure and the files written (figures included)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build(reader)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        try:
            staged = figures.draw_all(report, reader, stage)  # always drawn: the HTML inlines them
            if fmt in ("md", "all"):
                staged.append(markdown.write(report, stage))
            if fmt in ("html", "all"):
                staged.append(html.write(report, stage))
        except OSError as exc:
            raise GradfaithError(f"--out: cannot write the report into {out} ({exc.strerror or exc}); a report "
                                 f"already there was left as it was") from None
        paths = []
        for p in staged:  # renames within one file system: no space needed, each file whole
            dest = out / p.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            paths.append(dest)
        for f in report.figures:
            if not f.written:
                (out / f.file).unlink(missing_ok=True)  # a figure from an earlier report of this folder would be stale
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report, paths
