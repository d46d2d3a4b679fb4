import numpy as np
import pytest
from PIL import Image

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.imageio import pad_square, read_grey, to_square, window
from gradfaith_tui.data.prepared import load_split
from gradfaith_tui.data.splits import split_hash, split_samples
from gradfaith_tui.errors import DataError


def _jpg(path, size=(40, 40), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value,) * 3).save(path)


def test_finds_nested_iqothnccd_folders_and_ignores_strays(tmp_path):
    base = tmp_path / "copy" / "The IQ-OTHNCCD lung cancer dataset" / "The IQ-OTHNCCD lung cancer dataset"
    _jpg(base / "Normal cases" / "Normal case (1).jpg")
    _jpg(base / "Bengin cases" / "Bengin case (1).jpg")
    _jpg(base / "Malignant cases" / "Malignant case (1).jpg", size=(40, 52))
    _jpg(base / "Test cases" / "000.jpg")
    (base / "IQ-OTH-NCCD lung cancer dataset.txt").write_text("readme")
    ds = discover(tmp_path)
    assert ds.layout == "class-folders"
    assert sorted((s.path.name, s.label) for s in ds.samples) == [
        ("Bengin case (1).jpg", 1), ("Malignant case (1).jpg", 2), ("Normal case (1).jpg", 0)]
    assert any("unlabelled" in w for w in ds.warnings)


def test_missing_folder_and_no_classes_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        discover(tmp_path)


def test_manifest_row_pointing_nowhere_names_the_line(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\nmissing.jpg,Normal\n")
    with pytest.raises(DataError, match=r"manifest.csv:2: image not found: missing.jpg"):
        discover(tmp_path)


def test_corrupt_image_is_skipped_with_a_warning_or_fatal_when_strict(tmp_path):
    _jpg(tmp_path / "Normal cases" / "Normal case (1).jpg")
    bad = tmp_path / "Normal cases" / "Normal case (2).jpg"
    bad.write_bytes(b"not a jpeg")
    ds = discover(tmp_path)
    warnings = []
    arr = load_split(ds.samples, 16, warn=warnings.append)
    assert len(arr) == 1 and "Normal case (2).jpg" in warnings[0]
    with pytest.raises(DataError, match=r"Normal case \(2\)\.jpg"):
        load_split(ds.samples, 16, strict=True)


def test_resize_policy_keeps_mask_and_image_aligned():
    img = np.zeros((60, 40), np.uint8)
    mask = np.zeros((60, 40), bool)
    img[10:20, 5:15] = 255  # a bright lesion near the top-left of a portrait slice
    mask[10:20, 5:15] = True
    sq_img, sq_mask = to_square(img, 30), to_square(mask, 30, is_mask=True)
    assert sq_img.shape == sq_mask.shape == (30, 30)
    # padding is centred: 10 columns of black each side at 60 px, i.e. 5 at 30 px
    bright = sq_img > 127
    assert (bright == sq_mask).mean() > 0.97
    assert np.argwhere(sq_mask).min(0).tolist() == [5, 7]
    assert pad_square(img).shape == (60, 60)


def test_hu_window():
    assert window(np.array([-1350.0, -600.0, 150.0, 2000.0]), 1500, -600).tolist() == [0, 128, 255, 255]


def test_rgb_jpeg_of_grey_content_reads_as_grey(tmp_path):
    _jpg(tmp_path / "a.jpg", value=90)
    g = read_grey(tmp_path / "a.jpg")
    assert g.ndim == 2 and abs(int(g.mean()) - 90) <= 1


def test_split_is_stratified_patient_grouped_and_deterministic(phantoms):
    ds = discover(phantoms)
    a = split_samples(ds.samples, seed=0)
    assert a == split_samples(ds.samples, seed=0)
    assert split_hash(a) != split_hash(split_samples(ds.samples, seed=1))
    by_patient = {}
    for s in ds.samples:
        by_patient.setdefault(s.patient, set()).add(a[s.case_id])
    assert all(len(v) == 1 for v in by_patient.values()), "a patient's slices must stay in one split"
    for label in range(3):
        splits = {a[s.case_id] for s in ds.samples if s.label == label}
        assert splits == {"train", "val", "test"}
