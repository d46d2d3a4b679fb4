"""Evaluation results as JSON and CSV files beside the cache database, for scripts and spreadsheets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from gradfaith_tui.config import CLASS_NAMES

TABLE1_COLUMNS = ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")


def write_evaluation_files(cache: Path, bodies: dict[str, dict]) -> list[Path]:
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "evaluation.json"
    out.write_text(json.dumps(bodies, indent=2, sort_keys=True))
    t1 = cache / "table1.csv"
    with t1.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "class", *TABLE1_COLUMNS, "latency_ms", "throughput_ips", "device"])
        for model, body in bodies.items():
            timing = body.get("timing", {})
            w.writerow([model, "macro", *(round(body["macro"][k], 4) for k in TABLE1_COLUMNS),
                        timing.get("latency_ms", ""), timing.get("throughput_ips", ""), timing.get("device", "")])
            for cls, vals in body["per_class"].items():
                w.writerow([model, cls, *(round(vals[k], 4) if k in vals else "" for k in TABLE1_COLUMNS), "", "", ""])
    cm = cache / "confusion.csv"
    with cm.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "true", *(f"pred_{c}" for c in CLASS_NAMES)])
        for model, body in bodies.items():
            for name, row in zip(CLASS_NAMES, body["confusion"]):
                w.writerow([model, name, *row])
    return [out, t1, cm]
