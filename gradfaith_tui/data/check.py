"""`data check`: what a dataset holds and whether it is usable, as a plain dict (printed or JSON)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.splits import SPLITS, split_samples


def check_dataset(root: Path, split_seed: int = 0) -> dict:
    ds = discover(root)
    errors, sizes = [], Counter()
    readable = []
    for s in ds.samples:
        try:
            with Image.open(s.path) as im:
                im.verify()
            with Image.open(s.path) as im:
                sizes[f"{im.size[0]}x{im.size[1]}"] += 1
            readable.append(s)
        except Exception as exc:  # any decoder failure makes the file unusable
            errors.append(f"{s.path}: {exc.__class__.__name__}")
    assignment = split_samples(readable, split_seed)
    classes = {}
    for k, name in enumerate(CLASS_NAMES):
        members = [s for s in readable if s.label == k]
        counts = Counter(assignment[s.case_id] for s in members)
        classes[name] = {**{sp: counts.get(sp, 0) for sp in SPLITS}, "total": len(members),
                         "masks": sum(s.mask_path is not None for s in members)}
    warnings = list(ds.warnings)
    empty = [n for n, c in classes.items() if c["total"] == 0]
    for n in empty:
        warnings.append(f"class {n} has no images")
    patients = {s.patient for s in readable if s.patient}
    if not patients:
        warnings.append("no patient ids: the split is by slice, so slices of one patient can fall in train and test")
    usable = len(readable) > 0 and len(empty) < len(CLASS_NAMES) - 1
    return {"root": str(root), "layout": ds.layout, "n_images": len(ds.samples), "fingerprint": ds.fingerprint(),
            "classes": classes, "sizes": dict(sizes.most_common()), "patients": len(patients) or None,
            "warnings": warnings, "errors": errors, "usable": usable}
