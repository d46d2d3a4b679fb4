"""Layouts as users really bring them, bad input, and the resize policy, on tiny generated fixtures."""

import numpy as np
import pytest
from PIL import Image

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.imageio import pad_square, read_grey, read_mask, to_square, window
from gradfaith_tui.data.prepared import load_split, read_sample
from gradfaith_tui.data.splits import split_hash, split_samples
from gradfaith_tui.errors import DataError

IQ = "The IQ-OTHNCCD lung cancer dataset"


def _jpg(path, size=(40, 40), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value,) * 3).save(path)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_finds_iqothnccd_folders_nested_0_1_2_levels_and_ignores_strays(tmp_path, depth):
    base = tmp_path.joinpath(*[IQ] * depth)
    _jpg(base / "Malignant cases" / "Malignant case (1).jpg", size=(40, 52))  # folder order must not matter
    _jpg(base / "Normal cases" / "Normal case (1).jpg")
    _jpg(base / "Bengin cases" / "Bengin case (1).jpg")
    _jpg(base / "Test cases" / "000.jpg")
    (base / "IQ-OTH-NCCD lung cancer dataset.txt").write_text("readme")
    ds = discover(tmp_path)
    assert ds.layout == "class-folders"
    assert sorted((s.path.name, s.label) for s in ds.samples) == [
        ("Bengin case (1).jpg", 1), ("Malignant case (1).jpg", 2), ("Normal case (1).jpg", 0)]
    assert any("unlabelled" in w for w in ds.warnings)


def test_mac_side_files_and_zip_folders_are_not_slices_or_datasets(tmp_path):
    base = tmp_path / IQ
    for folder, name in (("Normal cases", "Normal case (1).jpg"), ("Bengin cases", "Bengin case (1).jpg")):
        _jpg(base / folder / name)
        (base / folder / f"._{name}").write_bytes(b"\x00\x05\x16\x07junk")  # AppleDouble, not a JPEG
        (base / folder / ".DS_Store").write_bytes(bytes(64))
        mirror = tmp_path / "__MACOSX" / IQ / folder  # what a zip made on a Mac unpacks beside the data
        mirror.mkdir(parents=True)
        (mirror / f"._{name}").write_bytes(b"\x00\x05\x16\x07junk")
    ds = discover(tmp_path)
    assert sorted(s.path.name for s in ds.samples) == ["Bengin case (1).jpg", "Normal case (1).jpg"]
    assert not ds.problems


def test_16_bit_slices_are_stretched_and_16_bit_masks_keep_every_lesion_pixel(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (8, 1))  # a 12-bit CT exported as PNG
    Image.fromarray(ramp).save(tmp_path / "ct.png")
    grey = read_grey(tmp_path / "ct.png")
    assert grey.dtype == np.uint8 and grey[0, 0] == 0 and grey[0, -1] == 255
    assert (grey == 255).mean() < 0.05  # 8-bit conversion alone clipped nearly all of it to white
    assert np.all(np.diff(grey[0].astype(int)) >= 0)
    lesion = np.zeros((8, 64), np.uint16)
    lesion[2:4, 5:9] = 1  # 1 of 65535: still lesion
    Image.fromarray(lesion).save(tmp_path / "mask.png")
    assert read_mask(tmp_path / "mask.png", (8, 64)).sum() == 8


def test_odd_sizes_like_512x623_are_padded_to_square(tmp_path):
    # 512x512, 512x623, 512x801, 404x511 scaled down by 8
    sizes = [(64, 64), (64, 78), (64, 100), (50, 64)]
    for i, size in enumerate(sizes):
        _jpg(tmp_path / "Normal cases" / f"Normal case ({i + 1}).jpg", size=size, value=200)
    arr = load_split(discover(tmp_path).samples, 32)
    assert arr.images.shape == (4, 32, 32)
    tall = arr.images[2]  # 64x100: black bars left and right, content in the middle
    assert tall[:, 0].max() < 30 and tall[16, 16] > 150


def test_generic_class_folders_any_case_keep_the_class_order(tmp_path):
    _jpg(tmp_path / "data" / "MALIGNANT" / "a.png")
    _jpg(tmp_path / "data" / "normal" / "b.jpg")
    _jpg(tmp_path / "data" / "Benign" / "c.jpeg")
    (tmp_path / "data" / "notes").mkdir()
    ds = discover(tmp_path)
    assert {s.path.name: s.label for s in ds.samples} == {"a.png": 2, "b.jpg": 0, "c.jpeg": 1}


def test_masks_folder_mirrored_or_flat_and_aligned_with_the_image(tmp_path):
    img = np.zeros((40, 30), np.uint8)
    img[5:10, 5:10] = 255
    _png(tmp_path / "Malignant cases" / "m1.png", img)
    _png(tmp_path / "Malignant cases" / "m2.png", img)
    _png(tmp_path / "masks" / "Malignant cases" / "m1.png", img)  # mirrored
    _png(tmp_path / "masks" / "m2.png", img)  # flat
    _jpg(tmp_path / "Normal cases" / "n1.jpg")
    ds = discover(tmp_path)  # masks/ mirrors the class folders but is not a second dataset
    masks = {s.path.name: s.mask_path for s in ds.samples}
    assert masks["m1.png"].parent.name == "Malignant cases" and masks["m2.png"].parent.name == "masks"
    assert masks["n1.jpg"] is None
    arr = load_split(sorted(ds.samples, key=lambda s: s.case_id), 20)
    assert arr.has_mask.tolist() == [True, True, False]
    assert ((arr.images[0] > 127) == arr.masks[0]).mean() > 0.97


def test_a_masks_folder_above_nested_class_folders_is_named_as_unused(tmp_path):
    inner = tmp_path / "The IQ-OTHNCCD lung cancer dataset"
    _jpg(inner / "Bengin cases" / "b1.jpg", size=(40, 40))
    _png(tmp_path / "masks" / "b1.png", np.full((40, 40), 255, np.uint8))
    ds = discover(tmp_path)
    assert ds.samples[0].mask_path is None
    assert any(w.startswith(f"{tmp_path / 'masks'}: not used; lesion masks are read from {inner / 'masks'}")
               for w in ds.warnings)


def test_masks_inside_a_class_folder_are_named_with_where_they_belong(tmp_path):
    """A masks/ folder put inside a class folder (and inside a patient's folder there) was skipped silently:
    every LocAcc came out blank with no word why."""
    _jpg(tmp_path / "Bengin cases" / "b1.jpg", size=(40, 40))
    _png(tmp_path / "Bengin cases" / "masks" / "b1.png", np.full((40, 40), 255, np.uint8))
    _jpg(tmp_path / "Bengin cases" / "P7" / "b2.jpg", size=(40, 40))
    _png(tmp_path / "Bengin cases" / "P7" / "masks" / "b2.png", np.full((40, 40), 255, np.uint8))
    (tmp_path / "Normal cases" / "masks").mkdir(parents=True)  # empty: nothing to say
    _jpg(tmp_path / "Normal cases" / "n1.jpg", size=(40, 40))
    ds = discover(tmp_path)
    assert [s.mask_path for s in ds.samples] == [None] * 3
    said = [w for w in ds.warnings if "lesion masks inside a class folder" in w]
    assert said == [f"{tmp_path / 'Bengin cases' / 'masks'}: lesion masks inside a class folder are not read; they "
                    f"belong in {tmp_path / 'masks' / 'Bengin cases'}, one <image name>.png each",
                    f"{tmp_path / 'Bengin cases' / 'P7' / 'masks'}: lesion masks inside a class folder are not read; "
                    f"they belong in {tmp_path / 'masks' / 'Bengin cases' / 'P7'}, one <image name>.png each"]


def test_mask_of_another_size_is_named_and_its_slice_kept_without_it(tmp_path):
    _jpg(tmp_path / "Benign cases" / "b1.jpg", size=(40, 40))
    _png(tmp_path / "masks" / "Benign cases" / "b1.png", np.zeros((30, 40), np.uint8))
    ds = discover(tmp_path)
    with pytest.raises(DataError, match=r"masks/Benign cases/b1.png: mask is 40x30 but its image is 40x40"):
        read_sample(ds.samples[0])  # strict: as an unreadable slice
    warnings = []
    arr = load_split([ds.samples[0]], 16, warn=warnings.append)  # the image is fine: classified, without LocAcc
    assert len(arr) == 1 and not arr.has_mask[0] and not arr.masks.any()
    assert len(warnings) == 1 and "b1.png: mask is 40x30 but its image is 40x40: mask ignored, the slice is kept" in warnings[0]
    with pytest.raises(DataError, match="mask is 40x30"):
        load_split([ds.samples[0]], 16, strict=True)


def test_an_empty_mask_counts_as_no_mask(tmp_path):
    _jpg(tmp_path / "Benign cases" / "b1.jpg", size=(40, 40))
    _png(tmp_path / "masks" / "Benign cases" / "b1.png", np.zeros((40, 40), np.uint8))  # all black: no lesion drawn
    _jpg(tmp_path / "Benign cases" / "b2.jpg", size=(40, 40))
    lesion = np.zeros((40, 40), np.uint8)
    lesion[10:20, 10:20] = 255
    _png(tmp_path / "masks" / "Benign cases" / "b2.png", lesion)
    arr = load_split(discover(tmp_path).samples, 16)
    assert arr.has_mask.tolist() == [False, True]


def test_csv_with_boxes_patients_and_a_row_pointing_nowhere(tmp_path):
    _jpg(tmp_path / "img" / "a.jpg", size=(60, 40))
    _jpg(tmp_path / "img" / "b.jpg")
    (tmp_path / "list.csv").write_text(
        "path,label,patient,x0,y0,x1,y1\n"
        "img/a.jpg,Malignant,P1,10,5,20,15\n"
        "img/a.jpg,Malignant,P1,40,20,50,30\n"  # a second box for the same slice
        "img/b.jpg,normal,P2,,,,\n"
        "img/gone.jpg,Benign,P3,,,,\n")
    ds = discover(tmp_path / "list.csv")  # any CSV can be given as --data
    assert ds.layout == "manifest" and ds.manifest.name == "list.csv"
    assert any("list.csv:5: image not found: img/gone.jpg" in p for p in ds.problems)
    a = next(s for s in ds.samples if s.case_id == "img/a.jpg")
    assert a.boxes == ((10, 5, 20, 15), (40, 20, 50, 30)) and a.patient == "P1"
    grey, mask = read_sample(a)
    assert mask.shape == grey.shape == (40, 60) and mask.sum() == 200 and mask[5, 10] and not mask[4, 10]
    sq = to_square(mask, 30, is_mask=True)  # boxes follow the image through the resize policy
    assert sq[5:10, 5:10].any() and not sq[:5].any()
    with pytest.raises(DataError, match="list.csv:5"):
        discover(tmp_path / "list.csv", strict=True)


def test_box_outside_its_image_names_the_file(tmp_path):
    _jpg(tmp_path / "a.jpg", size=(20, 20))
    (tmp_path / "manifest.csv").write_text("path,label,x0,y0,x1,y1\na.jpg,2,5,5,30,10\n")
    with pytest.raises(DataError, match=r"a.jpg: box 5,5,30,10 does not fit its 20x20 image"):
        read_sample(discover(tmp_path).samples[0])


def test_csv_boxes_half_filled_or_infinite_are_named_not_dropped_or_a_traceback(tmp_path):
    for name in "abcd":
        _jpg(tmp_path / f"{name}.jpg", size=(20, 20))
    (tmp_path / "manifest.csv").write_text(
        "path,label,x0,y0,x1,y1,shortcut_box\n"
        "a.jpg,2,5,5,,,\n"  # once: the box dropped, unsaid
        "b.jpg,2,inf,5,10,10,\n"  # once: OverflowError
        "c.jpg,2,,,,,1 2 inf 4\n"
        "d.jpg,2,1,1,9,9,\n")
    ds = discover(tmp_path)
    assert [s.case_id for s in ds.samples] == ["d.jpg"]
    assert any("manifest.csv:2: a lesion box needs all of x0,y0,x1,y1; x1, y1 empty" in p for p in ds.problems)
    assert any("manifest.csv:3: column x0 must be a number of pixels, got 'inf'" in p for p in ds.problems)
    assert any("manifest.csv:4: shortcut_box must be four numbers" in p for p in ds.problems)


def test_missing_folder_and_no_classes_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        discover(tmp_path)


def test_manifest_row_pointing_nowhere_names_the_line(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\nmissing.jpg,Normal\n")
    with pytest.raises(DataError, match=r"manifest.csv:2: image not found: missing.jpg"):
        discover(tmp_path)


def test_shortcut_box_is_read_resized_like_masks_and_a_bad_one_names_its_line(tmp_path):
    for k in (1, 2, 3):
        _jpg(tmp_path / f"n{k}.jpg", size=(40, 20))
    (tmp_path / "manifest.csv").write_text("path,label,shortcut,shortcut_box\n"
                                           "n1.jpg,Normal,1,0 0 10 10\nn2.jpg,Normal,0,\nn3.jpg,Normal,1,4 4 x\n")
    ds = discover(tmp_path)
    assert ds.samples[0].shortcut_box == (0, 0, 10, 10) and ds.samples[1].shortcut_box is None
    assert len(ds.samples) == 2 and "manifest.csv:4: shortcut_box must be four numbers" in ds.problems[0]
    arr = load_split(ds.samples, 20)
    # 40x20 padded to 40x40 (10 rows of black above), then halved: the box lands at rows 5-9, columns 0-4.
    assert arr.shortcut_regions[0, 5:10, 0:5].all() and arr.shortcut_regions[0].sum() == 25
    assert not arr.shortcut_regions[1].any()


def test_corrupt_or_empty_image_is_skipped_with_a_warning_or_fatal_when_strict(tmp_path):
    _jpg(tmp_path / "Normal cases" / "Normal case (1).jpg")
    (tmp_path / "Normal cases" / "Normal case (2).jpg").write_bytes(b"not a jpeg")
    (tmp_path / "Normal cases" / "Normal case (3).jpg").write_bytes(b"")
    ds = discover(tmp_path)
    warnings = []
    arr = load_split(ds.samples, 16, warn=warnings.append)
    assert len(arr) == 1 and "Normal case (2).jpg" in warnings[0]
    assert "Normal case (3).jpg: empty file" in warnings[1]
    with pytest.raises(DataError, match=r"Normal case \(2\)\.jpg"):
        load_split(ds.samples, 16, strict=True)


def test_unreadable_and_empty_class_folders_are_named(tmp_path, monkeypatch):
    _jpg(tmp_path / "Normal cases" / "n.jpg")
    (tmp_path / "Bengin cases").mkdir()
    locked = tmp_path / "Malignant cases"
    locked.mkdir()
    import os

    real_scandir = os.scandir

    def scandir(path="."):  # tests run as root, where chmod does not lock anyone out
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    ds = discover(tmp_path)
    assert any("Bengin cases: empty class folder" in w for w in ds.warnings)
    assert not any("Malignant cases: empty" in w for w in ds.warnings)  # unreadable, not empty
    assert ds.problems == [f"{locked}: cannot read folder (Permission denied)"]
    with pytest.raises(DataError, match="Malignant cases: cannot read folder"):
        discover(tmp_path, strict=True)


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


def test_lesion_mask_and_cam_coordinates_line_up_through_the_resize_policy():
    from gradfaith_tui.cam.methods import upsample

    img = np.full((90, 60), 40, np.uint8)  # non-square slice, lesion off-centre
    img[55:75, 38:54] = 250
    mask = img > 200
    size = 64
    sq_img, sq_mask = to_square(img, size), to_square(mask, size, is_mask=True)
    # a "CAM" at a model's native 8x8 grid: mean brightness per cell of the model input, then upsampled
    native = sq_img.reshape(8, 8, 8, 8).mean(axis=(1, 3)).astype(np.float32)
    cam = upsample(native[None], size)[0].numpy()
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    hot = cam >= 0.5
    assert (hot & sq_mask).sum() / sq_mask.sum() > 0.8  # the CAM covers the lesion ...
    cy, cx = np.argwhere(hot).mean(0)
    my, mx = np.argwhere(sq_mask).mean(0)
    assert abs(cy - my) < 3 and abs(cx - mx) < 3  # ... at the same place


def test_hu_window():
    assert window(np.array([-1350.0, -600.0, 150.0, 2000.0]), 1500, -600).tolist() == [0, 128, 255, 255]


def test_rgb_jpeg_of_grey_content_reads_as_grey(tmp_path):
    _jpg(tmp_path / "a.jpg", value=90)
    g = read_grey(tmp_path / "a.jpg")
    assert g.ndim == 2 and abs(int(g.mean()) - 90) <= 1


def test_identical_files_share_a_split_whatever_their_labels(tmp_path):
    for k, folder in enumerate(("Normal cases", "Bengin cases", "Malignant cases")):
        for i in range(10):
            _png(tmp_path / folder / f"{k}-{i}.png", np.full((8, 8), k * 40 + i, np.uint8))
    original = (tmp_path / "Normal cases" / "0-0.png").read_bytes()
    for i in range(4):  # copies filed under other classes, as in IQ-OTH/NCCD
        (tmp_path / ("Bengin cases", "Malignant cases")[i % 2] / f"copy{i}.png").write_bytes(original)
    ds = discover(tmp_path)
    family = ["Normal cases/0-0.png"] + [f"{('Bengin cases', 'Malignant cases')[i % 2]}/copy{i}.png" for i in range(4)]
    for seed in range(6):
        a = split_samples(ds.samples, seed, ds.file_sha1())
        assert len({a[c] for c in family}) == 1
        assert a == split_samples(list(reversed(ds.samples)), seed, ds.file_sha1())  # order does not matter
    assert any(len({split_samples(ds.samples, s)[c] for c in family}) > 1 for s in range(6))  # what it prevents


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


def test_split_cuts_by_slices_so_patients_of_many_slices_weigh_more_than_slices_without_an_id():
    """Three patients of 12 slices and 24 anonymised single slices of one class: counting groups (27) would put
    up to 36 of the 60 slices in one split; cutting by slices keeps each split near 60/20/20 of them."""
    from collections import Counter
    from pathlib import Path

    from gradfaith_tui.data.dataset import Sample

    samples = [Sample(f"p{g}-{k}", Path("x"), 1, f"P{g}", None) for g in range(3) for k in range(12)]
    samples += [Sample(f"anon-{k}", Path("x"), 1, None, None) for k in range(24)]
    for seed in range(10):
        a = split_samples(samples, seed)
        counts = Counter(a.values())
        assert abs(counts["train"] - 36) <= 6 and abs(counts["val"] - 12) <= 6 and abs(counts["test"] - 12) <= 6, counts
        assert all(len({a[f"p{g}-{k}"] for k in range(12)}) == 1 for g in range(3))  # patients stay whole
    # groups of one size: the same cut as counting groups (the demo's phantoms and their saved splits keep theirs)
    for n in (5, 7, 12):
        equal = [Sample(f"q{g}-{k}", Path("x"), 0, f"Q{g}", None) for g in range(n) for k in range(4)]
        counts = Counter(split_samples(equal, 0).values())
        assert (counts["train"] // 4, counts["val"] // 4) == (round(0.6 * n), min(round(0.2 * n), n - round(0.6 * n) - 1))


@pytest.mark.parametrize("lesion", [1, 2, 5])
def test_a_lesion_smaller_than_a_pixel_after_the_resize_keeps_one(lesion):
    mask = np.zeros((512, 512), bool)
    mask[300:300 + lesion, 100:100 + lesion] = True
    small = to_square(mask, 64, is_mask=True)
    assert small.sum() >= 1  # the case still has a mask to measure against
    ys, xs = np.nonzero(small)
    assert abs(ys.mean() - 300 * 64 / 512) <= 1.5 and abs(xs.mean() - 100 * 64 / 512) <= 1.5
    big = np.zeros((512, 512), bool)
    big[100:200, 100:200] = True
    assert to_square(big, 64, is_mask=True).sum() == pytest.approx(12.5 ** 2, rel=0.1)  # the 50% rule as before


def test_nothing_in_a_class_folder_layout_is_left_out_without_a_word(tmp_path):
    """A misspelt class folder, slices in sub-folders (DICOM's patient/series), links to content not fetched,
    images beside the class folders: each is used or named, never silently dropped."""
    import os

    base = tmp_path / IQ
    _jpg(base / "Normal cases" / "Normal case (1).jpg")
    _jpg(base / "Bengin cases" / "Bengin case (1).jpg")
    _jpg(base / "Malignent cases" / "Malignant case (1).jpg")  # misspelt: not a class
    _jpg(base / "Malignent cases" / "more" / "Malignant case (2).jpg")
    _jpg(base / "Bengin cases" / "P001" / "series1" / "Bengin case (2).jpg")  # below the class folder: Benign
    _png(base / "masks" / "Bengin cases" / "P001" / "series1" / "Bengin case (2).png", np.full((40, 40), 255, np.uint8))
    os.symlink(tmp_path / "annex" / "missing", base / "Bengin cases" / "Bengin case (3).jpg")
    _jpg(base / "stray.jpg")
    (base / "docs").mkdir()
    (base / "docs" / "readme.txt").write_text("no images here")
    ds = discover(tmp_path)
    assert sorted((s.case_id.split("/", 1)[1], s.label) for s in ds.samples) == [
        ("Bengin cases/Bengin case (1).jpg", 1), ("Bengin cases/P001/series1/Bengin case (2).jpg", 1),
        ("Normal cases/Normal case (1).jpg", 0)]
    nested = next(s for s in ds.samples if "P001" in s.case_id)
    assert nested.mask_path is not None and nested.mask_path.name == "Bengin case (2).png"
    said = "\n".join(ds.warnings)
    assert f"{base / 'Malignent cases'}: not a class folder, so its 2 images are not used" in said
    assert f"{base}: 1 image beside the class folders, in none of them: not used" in said
    assert "docs" not in said  # no images there: nothing left out
    assert ds.problems == [f"{base / 'Bengin cases' / 'Bengin case (3).jpg'}: a link to a missing file "
                           f"({tmp_path / 'annex' / 'missing'}); for a git-annex or DataLad copy, fetch the content first"]


def test_a_copy_nested_in_itself_takes_the_outer_class_folders_and_names_the_inner(tmp_path):
    outer = tmp_path / IQ
    for base in (outer, outer / IQ):  # as some Kaggle downloads unpack
        _jpg(base / "Normal cases" / "Normal case (1).jpg")
        _jpg(base / "Malignant cases" / "Malignant case (1).jpg")
    for root in (tmp_path, outer):
        ds = discover(root)
        assert sorted(s.path.parent.parent for s in ds.samples) == [outer, outer]
        assert [w for w in ds.warnings if "another set" in w] == [
            f"{outer / IQ}: another set of class folders, below {outer}; not used (pass it as DATA or --data to use "
            "it instead)"]
    assert len(discover(outer / IQ).samples) == 2  # the inner one, passed on purpose
    twins = tmp_path / "twins"
    for name in ("a", "b"):
        _jpg(twins / name / "Normal cases" / "n.jpg")
    with pytest.raises(DataError, match="several datasets found"):
        discover(twins)


def test_csv_labels_may_be_the_datasets_folder_names():
    from gradfaith_tui.data.dataset import parse_label

    assert [parse_label(v, "m.csv:2") for v in ("Bengin cases", "Normal cases", "Malignant case", "benign", "2")] == \
        [1, 0, 2, 1, 2]
    with pytest.raises(DataError, match="m.csv:2: unknown label 'Test cases'"):
        parse_label("Test cases", "m.csv:2")


def test_linked_series_are_used_and_a_flat_mask_is_not_given_to_every_series_file_of_its_name(tmp_path):
    import os

    base = tmp_path / "data"
    _jpg(base / "Normal cases" / "n.jpg")
    for p in ("p1", "p2"):
        _jpg(base / "Bengin cases" / p / "IM1.jpg")
    _png(base / "masks" / "IM1.png", np.full((40, 40), 255, np.uint8))  # flat: names one slice, not every IM1
    _jpg(tmp_path / "elsewhere" / "p3" / "IM2.jpg")
    os.symlink(tmp_path / "elsewhere" / "p3", base / "Bengin cases" / "p3")
    os.symlink(base / "Bengin cases", base / "Bengin cases" / "p3" / "loop")  # a link back up: walked once
    ds = discover(base)
    assert sorted(s.case_id for s in ds.samples) == ["Bengin cases/p1/IM1.jpg", "Bengin cases/p2/IM1.jpg",
                                                     "Bengin cases/p3/IM2.jpg", "Normal cases/n.jpg"]
    assert all(s.mask_path is None for s in ds.samples)


def test_images_beside_the_way_down_to_the_class_folders_are_named(tmp_path):
    inner = tmp_path / "inner"
    _jpg(inner / "Normal cases" / "n.jpg")
    _jpg(inner / "Bengin cases" / "b.jpg")
    _jpg(tmp_path / "loose.jpg")
    _jpg(tmp_path / "Normal casess" / "x.jpg")  # misspelt, one level up
    (tmp_path / "notes.txt").write_text("no images")
    ds = discover(tmp_path)
    said = "\n".join(ds.warnings)
    assert f"{tmp_path / 'loose.jpg'}: outside {inner}, where the class folders are, so its 1 image is not used" in said
    assert f"{tmp_path / 'Normal casess'}: outside {inner}" in said and "notes.txt" not in said
    assert len(ds.samples) == 2
