"""Every key of the explorer's table screen with what it does, as the help screen shows them (README.md's key
table is written after this list; the zoom screen's keys are in its footer and in the README)."""

from __future__ import annotations

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Move", (
        ("up/k, down/j", "move the cursor one case"),
        ("pgup/ctrl+u, pgdn/ctrl+d", "move one page"),
        ("home/g, end/G", "first / last case"),
    )),
    ("Sort", (
        ("f", "by Faith, lowest first"),
        ("l", "by LocAcc, lowest first (cases without a mask last)"),
        ("c", "by Consist, lowest first"),
        ("i", "by IoU, lowest first"),
        ("w", "by most models wrong"),
        ("n", "by case id"),
        ("r", "reverse (descending / ascending)"),
        ("m", "cycle the model that sorts, filters and fills the metric columns: worst across models, M1, M2, ..."),
    )),
    ("Filter", (
        ("t", "cycle the true class: all, Normal, Benign, Malignant"),
        ("p", "cycle the predicted class (of the chosen model, or of any model)"),
        ("v", "cycle right/wrong: all, wrong, right"),
        ("s", "only cases with an engine suspect"),
        ("u", "cycle user flags: all, any flag or note, each category, notes without a flag"),
        ("/", "search case ids (a part of the id; empty clears)"),
        ("escape", "clear every filter"),
    )),
    ("Triage", (
        ("1 2 3 4", "flag the case unfaithful / shortcut / mislocalised / fine (again: unflag)"),
        ("0", "remove the case's flag"),
        ("e", "write a note on the case"),
        ("z, ctrl+z", "undo the last flag or note"),
        ("x", "export the flagged cases with their metrics and notes to CSV and JSON"),
    )),
    ("Screens", (
        ("enter", "zoom: one model's heatmap large beside the input with the lesion outline"),
        ("M", "models: Table I, confusion matrices, metric histograms, suspects"),
        ("R", "reload: show the maps a running precompute wrote since (the title counts them)"),
        ("?", "this help"),
        ("ctrl+p", "command palette: every action by name (and Sort by confidence, which has no key)"),
        ("escape", "close a screen"),
        ("q", "quit"),
    )),
    ("Overlay", (
        ("C", "cycle the colormap: jet, hot, viridis, grey"),
        ("[ ]", "heat opacity down / up"),
        ("o", "lesion outline on / off"),
        ("b", "heatmap alone / over the slice"),
    )),
    ("Zoom", (
        ("left/h, right/l", "previous / next model"),
        ("up/k, down/j", "previous / next case"),
        ("s", "next training seed of this model"),
        ("m", "next CAM method stored for this model"),
    )),
)
