"""The paper's published Table I, transcribed from /work/shared/paper.md (its own data and split).

Shown beside this cache's numbers for reference only: the paper trained the full-size models on the
real IQ-OTH/NCCD slices, so its values are not comparable with an audit of other data or models.
"""

from __future__ import annotations

PAPER_TABLE1_SOURCE = ("Panboonyuen, \"Seeing Isn't Always Believing\", Table I: IQ-OTH/NCCD test set, "
                       "inference time per image (device not stated in the paper)")
PAPER_TABLE1_COLUMNS = ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy", "time_ms")

# family (config.PAPER_ARCHS) -> (paper's row name, values in PAPER_TABLE1_COLUMNS order)
PAPER_TABLE1: dict[str, tuple[str, tuple[float, ...]]] = {
    "resnet50": ("ResNet50", (0.82, 0.90, 0.81, 0.82, 0.79, 0.85, 12)),
    "resnet101": ("ResNet101", (0.85, 0.92, 0.84, 0.85, 0.83, 0.87, 15)),
    "densenet161": ("DenseNet161", (0.87, 0.89, 0.86, 0.87, 0.85, 0.88, 18)),
    "efficientnet_b0": ("EfficientNetB0", (0.80, 0.88, 0.79, 0.80, 0.78, 0.83, 10)),
    "vit_base_patch16_224": ("ViT-Base-Patch16-224", (0.88, 0.91, 0.87, 0.88, 0.86, 0.89, 25)),
}


def paper_rows() -> list[dict]:
    return [{"family": fam, "model": name, **dict(zip(PAPER_TABLE1_COLUMNS, vals))}
            for fam, (name, vals) in PAPER_TABLE1.items()]
