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
               "Near zero or negative: removing the highlighted region does not matter to the model, so the map is not faithful. "
               "It saturates where the model is already near 0 or 1 (a confident wrong case with --target true): see Faith(logit)."),
    MetricInfo("faith_logit", "Faith(logit)", True, "The same drop measured on the target logit."),
    MetricInfo("locacc", "LocAcc", True,
               "Share of the lesion mask covered by the CAM binarised at tau (paper eq. 4). Only where a mask exists."),
    MetricInfo("iou", "IoU", True, "Intersection over union of the binarised CAM and the lesion mask."),
    MetricInfo("consist", "Consist", True,
               "Mean IoU of this architecture's binarised maps across training seeds against the reference seed (paper eq. 6), "
               "over the seeds whose map explains the same class (with the predicted class as target, a seed that "
               "predicts another class is left out); undefined where no seed remains or both maps are flat."),
    MetricInfo("pointing_game", "Pointing game", True,
               "1 when the CAM's hottest pixel lies in the lesion mask or within 15 px of it at 224 px (the same share of the "
               "side at other sizes), else 0; 0 for a flat map, which has no hottest pixel. Only where a mask exists."),
    MetricInfo("relevance_mass", "Relevance mass", True,
               "Share of the CAM's total heat that lies inside the lesion mask. Only where a mask exists."),
    MetricInfo("relevance_rank", "Relevance rank", True,
               "Share of the K hottest pixels (K = lesion size) that lie inside the lesion mask; pixels tied at the K-th value "
               "count in proportion, so a flat map scores the lesion's share of the image. Only where a mask exists."),
    MetricInfo("deletion_auc", "Deletion AUC", False,
               "Area under the target probability as the hottest pixels are replaced first by a blurred copy of the slice "
               "(whatever --baseline says). Low: the map found what the model uses."),
    MetricInfo("insertion_auc", "Insertion AUC", True,
               "Area under the target probability as the hottest pixels are restored first onto a blurred copy of the "
               "slice (whatever --baseline says). High is faithful."),
    MetricInfo("faith_shuffled", "Faith, shuffled map", False,
               "--deep: Faith of the same map with its cells at random places (the same share of the slice removed), "
               "the mean of four draws: the control for Faith. A model whose Faith is not above this shows no more than its maps' area."),
    MetricInfo("border_heat", "Border heat", False,
               "Share of the CAM's heat in the image border band, where no anatomy is: a shortcut sign when high."),
    MetricInfo("outside_body_heat", "Outside-body heat", False,
               "Share of the CAM's heat outside the body outline: background the model should not need. Absent where no body "
               "was found."),
    MetricInfo("outside_lung_heat", "Outside-lung heat", False,
               "Share of the CAM's heat outside the lung fields, where the classes' lesions cannot be."),
    MetricInfo("lungs_only_flip", "Lungs-only flip", False,
               "Share of cases whose prediction flips when only the lungs are kept (everything outside them replaced by "
               "Faith's baseline); per case 1 for a flip, else 0. Keeping only the lungs is itself unusual input, so "
               "well-localised models flip often too: read it beside outside-lung heat (the lung-context rule needs "
               "both)."),
    MetricInfo("body_only_flip", "Body-only flip", False,
               "Per case 1 when replacing everything outside the body outline with the slice's air changes the "
               "prediction, else 0: the model used something outside the patient (a marker, burned-in text, the table)."),
    # Ground truth, phantoms only: the planted marker's place is known, so its removal is a real intervention.
    MetricInfo("shortcut_flip", "Marker flip", False,
               "Phantoms with a planted marker: 1 when painting the marker over with air changes the prediction (the model "
               "relied on the shortcut), else 0. Absent where no marker was planted."),
    MetricInfo("shortcut_drop", "Marker drop", False,
               "Phantoms with a planted marker: drop in the target class's probability when the marker is painted over."),
    MetricInfo("shortcut_heat", "Marker heat", True,
               "Phantoms with a planted marker: share of the CAM's heat on the marker. Higher is better only where the "
               "model relied on the marker (a faithful map then puts heat there); the Planted shortcut section splits "
               "the cases so."),
    MetricInfo("shortcut_area", "Marker area", False,
               "Phantoms with a planted marker: the marker's share of the slice, the heat share an evenly spread map gives it."),
)}
# Sanity check (cascading model-parameter randomisation): a method FAILS for a model when the mean Spearman
# rank correlation of its maps with the trained model's, after the last stage is randomised, is at least this.
FAIL_RHO = 0.5
