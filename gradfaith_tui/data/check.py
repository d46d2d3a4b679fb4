"""`data check`: what a dataset holds and whether it is usable, as a plain dict (printed or JSON)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from PIL import Image

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.data.dataset import Sample, discover
from gradfaith_tui.data.duplicates import exact_groups, near_pairs, phash_bits
from gradfaith_tui.data.imageio import LUNG_WINDOW, is_dicom, needs_full_read, read_grey
from gradfaith_tui.data.prepared import identical_summary, identical_warnings, read_sample
from gradfaith_tui.data.splitfile import find_saved, read_split, verify
from gradfaith_tui.data.splits import SPLITS, split_samples
from gradfaith_tui.errors import DataError

MAX_LISTED = 50  # duplicates listed in the report; the counts are always complete
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest()


def _scan(s: Sample, sha: str | None, mask_problems: list[str]) -> tuple[str, tuple[int, int], object]:
    """sha1 (the Dataset's, which read the file once for its fingerprint), (width, height) and perceptual hash
    of one slice; DataError naming it when unreadable. A mask that cannot be used goes to mask_problems: the
    slice itself is readable (the other commands use it without that mask)."""
    if sha is None:  # the Dataset could not read it: read again only to say why
        try:
            s.path.read_bytes()
        except OSError as exc:
            raise DataError(f"{s.path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
        raise DataError(f"{s.path}: cannot read")
    if is_dicom(s.path) or s.mask_path is not None or s.boxes:
        grey, _ = read_sample(s, mask_problems)  # full read: also checks the mask's size and the boxes
        im = Image.fromarray(grey)
        return sha, im.size, phash_bits(im)
    try:
        with Image.open(s.path) as im:
            size = im.size
            if needs_full_read(im):  # hash it as training reads it
                return sha, size, phash_bits(Image.fromarray(read_grey(s.path)))
            im.draft("L", (128, 128))  # JPEG decodes at reduced scale: fast, enough for the hash
            im.load()
            return sha, size, phash_bits(im.convert("L"))
    except DataError:
        raise
    except Exception as exc:  # any decoder failure makes the file unusable
        if sha == EMPTY_SHA1:
            raise DataError(f"{s.path}: empty file") from None
        raise DataError(f"{s.path}: not a readable image ({exc.__class__.__name__})") from None


ODD_SIZE_GAP = 0.10  # share of a class at uncommon sizes, above the other classes', that counts as a cue


def _odd_sizes_by_class(readable: list[Sample], size_of: dict[str, str], sizes: Counter) -> dict:
    """Per class, the share of slices not at the commonest size; a cue when one class has many more."""
    common = sizes.most_common(1)[0][0] if sizes else ""
    share = {}
    for k, name in enumerate(CLASS_NAMES):
        members = [s for s in readable if s.label == k]
        if members:
            share[name] = sum(size_of[s.case_id] != common for s in members) / len(members)
    odd = sum(n for size, n in sizes.items() if size != common)
    cue = odd >= 5 and len(share) > 1 and max(share.values()) - min(share.values()) >= ODD_SIZE_GAP
    return {"common": common, "share": share, "cue": cue}


def check_dataset(root: Path, split_seed: int = 0, window: tuple[float, float] | None = None) -> dict:
    ds = discover(root, window)
    errors = list(ds.problems)
    sizes, sha, hashes, readable, size_of, unusable_mask = Counter(), {}, {}, [], {}, set()
    mask_warnings: list[str] = []
    for s in ds.samples:
        mask_problems: list[str] = []
        try:
            sha[s.case_id], (w, h), hashes[s.case_id] = _scan(s, ds.file_sha1()[s.case_id], mask_problems)
        except DataError as exc:
            errors.append(str(exc))
            continue
        # the slice is kept, so a warning, not an error (none where the slice itself failed)
        mask_warnings += [f"{p} (the slice is used without a mask)" for p in mask_problems]
        if mask_problems:
            unusable_mask.add(s.case_id)
        size_of[s.case_id] = f"{w}x{h}"
        sizes[f"{w}x{h}"] += 1
        readable.append(s)
    warnings = list(ds.warnings) + mask_warnings
    odd_sizes = _odd_sizes_by_class(readable, size_of, sizes)
    if odd_sizes["cue"]:
        shares = ", ".join(f"{v:.0%} of {k}" for k, v in odd_sizes["share"].items())
        warnings.append(f"image size follows the class: sizes other than {odd_sizes['common']} are {shares}; a "
                        "non-square slice is padded with black bars, which a model can learn as a class cue")
    saved = find_saved(ds, split_seed)
    split_note = f"saved in {saved}" if saved else "not saved yet (the first train saves it)"
    mismatch = False
    try:
        assignment = (verify(ds, saved, read_split(saved), warnings.append) if saved
                      else split_samples(ds.samples, split_seed, ds.file_sha1()))
    except DataError as exc:
        errors.append(str(exc))
        assignment = split_samples(ds.samples, split_seed, ds.file_sha1())
        mismatch = True
        split_note = (f"saved split does not match the data; the split counts are of a fresh split, not saved "
                      f"(`data split --force --split-seed {split_seed}` saves it)")
    classes = {}
    for k, name in enumerate(CLASS_NAMES):
        members = [s for s in readable if s.label == k]
        counts = Counter(assignment.get(s.case_id) for s in members)
        classes[name] = {**{sp: counts.get(sp, 0) for sp in SPLITS}, "total": len(members),
                         "masks": sum((s.mask_path is not None or bool(s.boxes)) and s.case_id not in unusable_mask
                                      for s in members)}
    empty = [n for n, c in classes.items() if c["total"] == 0]
    counts = dict(zip(CLASS_NAMES, ds.counts()))
    warnings += [f"class {n} has no readable images" for n in empty if counts[n]]  # none at all: discover says so
    for n, c in classes.items():  # too few patients or slices of a class to go round every split
        missing = [sp for sp in SPLITS if c["total"] and not c[sp]]
        if missing:
            warnings.append(f"class {n} has no images in the {' and '.join(missing)} split{'s' * (len(missing) > 1)}: "
                            f"{'Table I and the audit cannot judge it' if 'test' in missing else 'model selection cannot see it'}; "
                            f"more data of that class fixes it")
    patients = {s.patient for s in readable if s.patient}
    if not patients and not ds.ids_set_aside:  # set aside: discover's warning says why
        warnings.append("no patient ids: the split is by slice, so slices of one patient can fall in train and test "
                        "(see the near-duplicates)")
    exact = exact_groups(sha)
    identical = identical_summary(ds, assignment)
    near = near_pairs(hashes, assignment)
    warnings += identical_warnings(identical)
    if near:
        warnings.append(f"{len(near)} near-duplicate pairs across splits (pHash distance <= 12 of 256 bits)")
    abnormal = [s for s in readable if s.label]
    with_mask = sum((s.mask_path is not None or bool(s.boxes)) and s.case_id not in unusable_mask for s in readable)
    if abnormal and with_mask == 0:
        warnings.append("no lesion masks: LocAcc and IoU will be shown as absent")
    n_dicom = sum(is_dicom(s.path) for s in readable)
    shortcut = {n: sum(bool(s.shortcut) for s in readable if s.label == k) for k, n in enumerate(CLASS_NAMES)}
    hollow = [sp for sp in SPLITS if readable and not any(c[sp] for c in classes.values())]
    if hollow:  # train, evaluate or precompute would stop on it: not "usable" with a warning per class
        errors.append(f"the {' and '.join(hollow)} split{'s' * (len(hollow) > 1)} hold{'s' * (len(hollow) == 1)} no "
                      f"images: too few slices or patients to split 60/20/20, or a hand-edited split")
    usable = len(readable) > 0 and len(empty) < len(CLASS_NAMES) - 1 and not mismatch and not hollow
    but = []  # what "usable" does not say: the verdict line names it
    if usable and errors:
        what = "the error above names" if len(errors) == 1 else f"the {len(errors)} errors above name"
        but.append(f"without what {what} (fix or remove {'it' if len(errors) == 1 else 'those'} before the first `train`: "
                   "its saved split and every checkpoint are tied to the files as they are then)")
    if usable and empty:
        but.append(f"with no {' or '.join(empty)} images")
    return {"root": str(root), "layout": ds.layout, "n_images": len(ds.samples), "n_readable": len(readable),
            "fingerprint": ds.fingerprint(), "classes": classes, "sizes": dict(sizes.most_common()),
            "uncommon_size_share": odd_sizes["share"],
            "patients": len(patients) or None, "split": {"seed": split_seed, "file": str(saved) if saved else None,
                                                          "note": split_note},
            "masks": {"with_mask": with_mask, "abnormal": len(abnormal)},
            "shortcut": shortcut if any(s.shortcut is not None for s in readable) else None,
            "dicom": {"files": n_dicom, "default_window": list(window or LUNG_WINDOW)},
            "duplicates": {"exact_groups": len(exact), "exact_across_splits": identical["across_splits"],
                           "exact_label_conflicts": identical["label_conflicts"],
                           "near_pairs_across_splits": len(near), "exact": exact[:MAX_LISTED],
                           "near": [list(p) for p in near[:MAX_LISTED]]},
            "warnings": warnings, "errors": errors, "usable": usable, "usable_but": but}
