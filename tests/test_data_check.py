"""`data check`: counts, sizes, unreadable files, duplicates and leakage, exit codes."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from gradfaith_tui.cli.data import app
from gradfaith_tui.data.check import check_dataset
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import prepare


def _noise_dataset(root, n=10, seed=0):
    """Distinct random slices, no patient ids (like IQ-OTH/NCCD), some of odd size."""
    rng = np.random.default_rng(seed)
    for k, folder in enumerate(("Normal cases", "Bengin cases", "Malignant cases")):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            shape = (48, 40) if i == 0 else (40, 40)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / folder / f"{k}-{i}.png")
    return root


def test_exact_and_near_duplicates_across_splits_are_reported(tmp_path):
    root = _noise_dataset(tmp_path)
    original = root / "Normal cases" / "0-3.png"
    src = np.asarray(Image.open(original))
    for i in range(3):  # byte-identical copies and slightly brightened re-saves, in other classes
        (root / "Malignant cases" / f"copy{i}.png").write_bytes(original.read_bytes())
        near = np.clip(src.astype(int) + 4 + i, 0, 255).astype(np.uint8)
        Image.fromarray(near).save(root / "Bengin cases" / f"near{i}.png")
    r = check_dataset(root)
    assert r["usable"] and r["patients"] is None
    assert any("no patient ids" in w for w in r["warnings"])
    assert r["sizes"] == {"40x40": 33, "40x48": 3}
    d = r["duplicates"]
    family = ["Normal cases/0-3.png"] + [f"Malignant cases/copy{i}.png" for i in range(3)]
    assert d["exact_groups"] == 1 and sorted(d["exact"][0]) == sorted(family)
    split_of = prepare(discover(root), 0).assignment
    family += [f"Bengin cases/near{i}.png" for i in range(3)]
    crossing = {tuple(sorted((a, b))) for a, b, _ in d["near"]}
    expected = {tuple(sorted((a, b))) for i, a in enumerate(family) for b in family[i + 1:] if split_of[a] != split_of[b]}
    assert expected and crossing == expected  # only these look alike, and only pairs across splits count
    assert d["exact_across_splits"] == int(len({split_of[c] for c in family[:4]}) > 1)


def test_unreadable_files_empty_class_and_mask_problems_are_named_but_usable(tmp_path):
    root = _noise_dataset(tmp_path, n=6)
    (root / "Normal cases" / "bad.png").write_bytes(b"garbage")
    (root / "Normal cases" / "empty.png").write_bytes(b"")
    (root / "masks" / "Malignant cases").mkdir(parents=True)
    Image.new("L", (10, 10)).save(root / "masks" / "Malignant cases" / "2-1.png")
    r = check_dataset(root)
    errors = "\n".join(r["errors"])
    assert "bad.png: not a readable image" in errors and "empty.png: empty file" in errors
    # the slice is kept: a warning, and its mask is in no count
    assert "masks/Malignant cases/2-1.png: mask is 10x10 but its image is 40x40 (the slice is used without a mask)" \
        in "\n".join(r["warnings"]) and "2-1.png" not in errors
    assert r["usable"] and r["n_readable"] == 18  # the slice with the bad mask is readable, and used
    assert r["classes"]["Malignant"]["masks"] == 0 and r["masks"]["with_mask"] == 0
    for p in (root / "Bengin cases").iterdir():
        p.unlink()
    r = check_dataset(root)
    assert r["usable"] and any("class Benign has no images: the models never see it" in w for w in r["warnings"])
    assert r["usable_but"][-1] == "with no Benign images"
    assert r["usable_but"][0].startswith("without what the 2 errors above name (fix or remove those before the first `train`")


def test_cli_exit_codes_json_and_text(tmp_path):
    root = _noise_dataset(tmp_path, n=5)
    runner = CliRunner()
    res = runner.invoke(app, ["check", str(root), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.output)["classes"]["Normal"]["total"] == 5
    res = runner.invoke(app, ["check", str(root)])
    assert res.exit_code == 0
    assert "sizes (width x height):" in res.output and "40x48" in res.output and "duplicates:" in res.output
    assert "usable" in res.output and "no patient ids" in res.output
    prepare(discover(root), 0)  # a saved split, then the data changes under it: not usable
    Image.new("L", (40, 40), 3).save(root / "Normal cases" / "late.png")
    res = runner.invoke(app, ["check", str(root)])
    assert res.exit_code == 1 and "no longer matches" in res.output and "not usable" in res.output
    assert "the split counts are of a fresh split, not saved (`data split --force --split-seed 0` saves it)" in res.output
    for folder in ("Bengin cases", "Malignant cases"):  # a single class cannot train a classifier
        for p in (root / folder).iterdir():
            p.unlink()
    (root / "splits" / "split-seed0.csv").unlink()
    assert runner.invoke(app, ["check", str(root)]).exit_code == 1


def test_check_on_phantoms_uses_patients_and_counts_masks(phantoms):
    r = check_dataset(phantoms)
    assert r["usable"] and r["patients"] == 15 and not r["errors"]
    assert r["masks"]["with_mask"] == r["masks"]["abnormal"] == 30
    assert r["duplicates"]["near_pairs_across_splits"] == 0  # whole patients per split: nothing leaks


def test_identical_files_with_other_labels_and_sizes_that_follow_the_class_are_warned(tmp_path):
    root = _noise_dataset(tmp_path, n=10)
    original = root / "Normal cases" / "0-3.png"
    (root / "Malignant cases" / "copy.png").write_bytes(original.read_bytes())
    rng = np.random.default_rng(5)
    for i in range(6):  # only Malignant has tall slices: their padding bars could tell the class
        Image.fromarray(rng.integers(0, 256, (56, 40), dtype=np.uint8)).save(root / "Malignant cases" / f"tall{i}.png")
    r = check_dataset(root)
    assert r["duplicates"]["exact_label_conflicts"] == 1 and r["duplicates"]["exact_across_splits"] == 0
    conflict = next(w for w in r["warnings"] if "different labels" in w)
    assert "Malignant cases/copy.png = Normal cases/0-3.png" in conflict
    assert any(w.startswith("image size follows the class") and "of Malignant" in w for w in r["warnings"])
    assert r["uncommon_size_share"]["Malignant"] > 0.4 > r["uncommon_size_share"]["Normal"]
    warned = []
    prep = prepare(discover(root), 0, warned.append)  # train, evaluate and precompute say it too
    assert prep.identical["label_conflicts"] == 1 and any("different labels" in w for w in warned)
    res = CliRunner().invoke(app, ["check", str(root)])
    assert "1 with different labels" in res.output and "other than 40x40:" in res.output


def test_identical_pairs_name_their_shared_folders_once():
    from gradfaith_tui.data.duplicates import pair_text

    nested = "The IQ-OTHNCCD lung cancer dataset/The IQ-OTHNCCD lung cancer dataset"
    assert pair_text([f"{nested}/Bengin cases/Bengin case (13).jpg", f"{nested}/Normal cases/Normal case (3).jpg"]) == (
        f"Bengin cases/Bengin case (13).jpg = Normal cases/Normal case (3).jpg (in {nested}/)")
    assert pair_text(["Normal cases/a.png", "Malignant cases/a.png"]) == "Normal cases/a.png = Malignant cases/a.png"


def test_a_class_missing_from_a_split_is_warned(tmp_path):
    root = _noise_dataset(tmp_path, n=10)
    for p in sorted((root / "Bengin cases").iterdir())[2:]:  # two Benign slices cannot reach all three splits
        p.unlink()
    r = check_dataset(root)
    counts = r["classes"]["Benign"]
    missing = [sp for sp in ("train", "val", "test") if not counts[sp]]
    assert missing and r["usable"]
    said = next(w for w in r["warnings"] if w.startswith("class Benign has no images in the"))
    assert all(sp in said for sp in missing)
    assert not any(w.startswith("class Normal has no images") for w in r["warnings"])
