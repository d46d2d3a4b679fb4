"""Figs. 2 and 3: cases (rows) by model (columns), the input first, each heatmap overlaid on the slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradfaith_tui.report.build import Report
from gradfaith_tui.report.words import num
from gradfaith_tui.store.reader import CacheReader

HEAT_CMAP = "jet"
HEAT_ALPHA = 0.5
MASK_COLOUR = "cyan"


def upsample(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A native-resolution map (e.g. 4x4) to the image size, bicubic, clipped back to [0, 1]."""
    from PIL import Image

    img = Image.fromarray(np.nan_to_num(heat.astype(np.float32)), mode="F")
    big = np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(big, 0.0, 1.0)


def _show_input(ax, image: np.ndarray, mask: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=MASK_COLOUR, linewidths=0.8)


def _short(case_id: str, width: int = 24) -> str:
    name = case_id.rsplit("/", 1)[-1]
    return name if len(name) <= width else "…" + name[-(width - 1):]


def case_grid(report: Report, reader: CacheReader, idxs: list[int], path: Path) -> bool:
    if not idxs:
        return False
    from gradfaith_tui.report.figures import pyplot, save

    plt = pyplot()
    rows = reader.rows(idxs)
    cols = report.columns
    fig, axes = plt.subplots(len(rows), 1 + len(cols), figsize=(1.6 * (1 + len(cols)), 1.75 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        # the case's own record says whether it has a mask (masks.npy may keep an older one: cases.has_mask wins)
        image, mask = reader.image(row.idx), reader.mask(row.idx) & row.has_mask
        truth = report.classes[row.label] if row.label is not None else "?"
        _show_input(axes[r, 0], image, mask)
        axes[r, 0].set_ylabel(f"{_short(row.case_id)}\ntrue {truth}", fontsize=7)
        if r == 0:
            axes[r, 0].set_title("input")
        for c, col in enumerate(cols, start=1):
            ax = axes[r, c]
            heat = reader.heatmap(col["expl_id"], row.idx) if col["expl_id"] is not None else None
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if heat is not None:
                ax.imshow(upsample(heat, image.shape[:2]), cmap=HEAT_CMAP, vmin=0, vmax=1, alpha=HEAT_ALPHA,
                          interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "no map", ha="center", va="center", transform=ax.transAxes, color="white",
                        bbox={"facecolor": "black", "edgecolor": "none", "pad": 2})  # readable on bright tissue
            res = row.results.get(col["name"])
            pred = report.classes[res.pred] if res and res.pred is not None else "–"
            faith = res.metrics.get("faith") if res else None
            ax.set_xlabel(f"{pred} · Faith {'–' if faith is None else num(faith, 2)}", fontsize=7)
            if r == 0:
                ax.set_title(f"{col['name']}\n({col['stands_for']})")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save(fig, path)
    return True
