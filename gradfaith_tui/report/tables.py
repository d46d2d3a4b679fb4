"""Table I, confusion matrices and the faithfulness summary as rich tables (terminal) and Markdown."""

from __future__ import annotations


from gradfaith_tui.config import CLASS_NAMES, PAPER_LABELS
from gradfaith_tui.report.fit import NumbersTable
from gradfaith_tui.store.exports import TABLE1_COLUMNS


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table1_rows(evals: dict[str, dict]) -> list[list[str]]:
    rows = []
    for model, body in evals.items():
        t = body.get("timing", {})
        rows.append([model, *(_fmt(body["macro"][k]) for k in TABLE1_COLUMNS),
                     _fmt(t.get("latency_ms"), 2), t.get("device", "–")])
    return rows


TABLE1_HEADER = ["Model", "Sensitivity", "Specificity", "Precision", "Recall", "F1", "Accuracy", "ms/image", "Device"]


def table1_rich(evals: dict[str, dict], title: str = "Table I (macro over classes, test split)") -> NumbersTable:
    """Model names do not wrap, and a device every row shares goes under the table instead of in a column
    (so at 80 columns names and numbers stay whole, headers shortened instead)."""
    rows = table1_rows(evals)
    devices = {r[-1] for r in rows}
    shared = len(devices) == 1 and "–" not in devices
    t = NumbersTable(title=title, caption=f"timed on {devices.pop()}" if shared else None)
    for h in TABLE1_HEADER[:-1] if shared else TABLE1_HEADER:
        t.add_column(h, justify="left" if h in ("Model", "Device") else "right", no_wrap=h == "Model")
    for row in rows:
        t.add_row(*(row[:-1] if shared else row))
    return t


def per_class_rich(model: str, body: dict) -> NumbersTable:
    t = NumbersTable(title=f"{model}: per class (one vs rest)")
    t.add_column("Class")
    for h in ("Sensitivity", "Specificity", "Precision", "F1", "Support"):
        t.add_column(h, justify="right")
    for name, v in body["per_class"].items():
        t.add_row(name, _fmt(v["sensitivity"]), _fmt(v["specificity"]), _fmt(v["precision"]), _fmt(v["f1"]),
                  str(v.get("support", "–")))
    return t


def confusion_rich(model: str, body: dict) -> NumbersTable:
    t = NumbersTable(title=f"{model}: rows true, columns predicted")
    t.add_column("")
    for c in CLASS_NAMES:
        t.add_column(c, justify="right")
    for name, row in zip(CLASS_NAMES, body["confusion"]):
        t.add_row(name, *map(str, row))
    return t


SUMMARY_HEADER = ["Model", "Stands for", "n", "Accuracy", "LocAcc", "Faith", "Consist"]


def summary_rows(summary: list[dict]) -> list[list[str]]:
    return [[s["model"], PAPER_LABELS.get(s["family"], s["family"]), str(s["n"]), _fmt(s["accuracy"]),
             _fmt(s["locacc"]), _fmt(s["faith"]), _fmt(s["consist"])] for s in summary]


def summary_rich(summary: list[dict]) -> NumbersTable:
    t = NumbersTable(title="Faithfulness audit (means over test cases; LocAcc only where a mask exists)")
    for h in SUMMARY_HEADER:
        t.add_column(h, justify="left" if h in ("Model", "Stands for") else "right", no_wrap=h == "Model")
    for row in summary_rows(summary):
        t.add_row(*row)
    return t


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
