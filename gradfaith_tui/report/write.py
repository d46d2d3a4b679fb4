"""One call that turns a cache into report files: the figures, then report.md and/or report.html."""

from __future__ import annotations

from pathlib import Path

from gradfaith_tui.report import figures, html, markdown
from gradfaith_tui.report.build import Report, build
from gradfaith_tui.store.cache import CacheReader

FORMATS = ("md", "html", "all")


def write_report(reader: CacheReader, out: Path, fmt: str = "all") -> tuple[Report, list[Path]]:
    """Returns the report structure and the files written (figures included)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build(reader)
    paths = figures.draw_all(report, reader, out)  # always drawn: the HTML inlines them
    if fmt in ("md", "all"):
        paths.append(markdown.write(report, out))
    if fmt in ("html", "all"):
        paths.append(html.write(report, out))
    return report, paths
