"""The report as one self-contained HTML file: the Markdown text rendered, figures inlined as data URIs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from gradfaith_tui.report import markdown
from gradfaith_tui.report.build import Figure, Report

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
code { font-size: 12px; }
"""


def _data_uri(out: Path):
    def src(f: Figure) -> str:
        return "data:image/png;base64," + base64.b64encode((out / f.file).read_bytes()).decode("ascii")
    return src


def render(r: Report, out: Path) -> str:
    from markdown_it import MarkdownIt  # comes with rich

    # html=False: text from the cache (notes, config) is escaped, never passed through as markup.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown.render(r, _data_uri(Path(out))))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(r.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def write(r: Report, out: Path) -> Path:
    path = Path(out) / "report.html"
    path.write_text(render(r, out))
    return path
