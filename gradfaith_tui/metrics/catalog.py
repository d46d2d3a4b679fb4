"""What each stored metric means and which direction is good. Torch-free: the explorer reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    meaning: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("faith", "Faith", True,
               "Drop in the target class's softmax probability when the input is multiplied by (1 - CAM) (paper eq. 5). "
               "Near zero or negative: removing the highlighted region does not matter to the model, so the map is not faithful."),
    MetricInfo("faith_logit", "Faith(logit)", True, "The same drop measured on the target logit."),
    MetricInfo("locacc", "LocAcc", True,
               "Share of the lesion mask covered by the CAM binarised at tau (paper eq. 4). Only where a mask exists."),
    MetricInfo("iou", "IoU", True, "Intersection over union of the binarised CAM and the lesion mask."),
    MetricInfo("consist", "Consist", True,
               "Mean IoU of this architecture's binarised maps across training seeds against the reference seed (paper eq. 6)."),
)}
SORTABLE = ("faith", "locacc", "consist", "iou")
