"""The report's PNG figures (matplotlib, Agg): Fig. 1 bars, Fig. 4 confusion matrices, and the case grids.

PNGs are saved without the Software tag or any timestamp, so the same cache gives byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

from gradfaith_tui.report.build import Report
from gradfaith_tui.store.reader import CacheReader

PNG_METADATA = {"Software": None}
DPI = 100


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported only when figures are drawn."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "svg.hashsalt": "gradfaith"})
    return plt


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    pyplot().close(fig)


def bars(report: Report, path: Path) -> bool:
    """Fig. 1: grouped bars of macro Sensitivity, Specificity and F1 per model."""
    if not report.table1:
        return False
    import numpy as np

    plt = pyplot()
    names = [r["model"] for r in report.table1]
    keys = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("f1", "F1-score"))
    x = np.arange(len(names))
    w = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 3.6))
    for i, (k, lab) in enumerate(keys):
        ax.bar(x + (i - 1) * w, [r[k] or 0.0 for r in report.table1], w, label=lab)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro average")
    ax.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, path)
    return True


def confusion(report: Report, path: Path) -> bool:
    """Fig. 4: one confusion matrix per model, counts written in the cells."""
    if not report.confusion:
        return False
    plt = pyplot()
    items = list(report.confusion.items())
    ncols = min(5, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.4 * nrows), squeeze=False)
    short = list(report.classes)
    for ax in axes.flat[len(items):]:
        ax.axis("off")
    # One colour scale for every matrix (the largest count anywhere): the same shade is the same count in each.
    top = max(max(max(r) for r in cm) for _, cm in items) or 1
    for ax, (model, cm) in zip(axes.flat, items):
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=top)
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
        ax.set_title(model)
        ax.set_xticks(range(len(short)), short, rotation=30, ha="right")
        ax.set_yticks(range(len(short)), short)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    save(fig, path)
    return True


def draw_all(report: Report, reader: CacheReader, out: Path) -> list[Path]:
    """Write every figure that has something to show; marks each Figure as written or not."""
    from gradfaith_tui.report.case_grid import case_grid

    written = []
    for f in report.figures:
        path = Path(out) / f.file
        if f.key == "fig1":
            f.written = bars(report, path)
        elif f.key == "fig4":
            f.written = confusion(report, path)
        else:
            f.written = case_grid(report, reader, f.idxs, path)
        if f.written:
            written.append(path)  # one not drawn: write_report removes an earlier report's from --out
    return written
