"""A Markdown audit report from a cache: Table I, confusion matrices, the faithfulness summary, provenance."""

from __future__ import annotations

import json
from pathlib import Path

from gradfaith_tui import __version__
from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.report.tables import (SUMMARY_HEADER, TABLE1_HEADER, markdown_table, summary_rows,
                                         table1_rows)
from gradfaith_tui.store.cache import CacheReader


def render(reader: CacheReader) -> str:
    evals = reader.evaluation()
    parts = [f"# Grad-CAM faithfulness audit\n\nCache: `{reader.root}` · {reader.n_cases} test cases · "
             f"method {reader.method} · gradfaith-tui {__version__}\n"]
    parts.append("## Table I: classification on the test split\n")
    parts.append(markdown_table(TABLE1_HEADER, table1_rows(evals)) + "\n")
    parts.append("## Confusion matrices (rows true, columns predicted)\n")
    for model, body in evals.items():
        rows = [[name, *map(str, row)] for name, row in zip(CLASS_NAMES, body["confusion"])]
        parts.append(f"**{model}**\n\n" + markdown_table(["", *CLASS_NAMES], rows) + "\n")
    parts.append("## Faithfulness\n")
    parts.append(markdown_table(SUMMARY_HEADER, summary_rows(reader.summary())) + "\n")
    parts.append("LocAcc: share of the lesion mask inside the CAM binarised at tau (eq. 4). Faith: drop in the target "
                 "class probability when the input is multiplied by (1 - CAM) (eq. 5). Consist: mean IoU of binarised "
                 "maps across seeds against the reference seed (eq. 6). Higher is better for all three.\n")
    parts.append("## Run\n")
    meta = {k: v for k, v in reader.meta.items() if k != "config"}
    parts.append("```json\n" + json.dumps({"meta": meta, "config": reader.config}, indent=2, sort_keys=True) + "\n```\n")
    return "\n".join(parts)


def write(reader: CacheReader, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text(render(reader))
    return path
