"""Image files as hospitals and archives hand them over: turned by EXIF, stacked, huge, float with holes,
named by UID, DICOM that is not CT, one anonymised PatientID for everyone."""

import shutil

import numpy as np
import pydicom
import pytest
from PIL import ExifTags, Image
from pydicom.data import get_testdata_file

from gradfaith_tui.data.check import check_dataset
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.imageio import is_dicom, read_grey, read_mask
from gradfaith_tui.data.splits import split_samples
from gradfaith_tui.errors import DataError

CT = get_testdata_file("CT_small.dcm")
ORIENTATION = ExifTags.Base.Orientation


def _gradient(w=20, h=10) -> np.ndarray:
    return (np.arange(w * h).reshape(h, w) % 251).astype(np.uint8)


def _turned(path, arr, fmt):
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored sideways; viewers turn it 90 degrees clockwise
    Image.fromarray(arr).save(path, fmt, exif=exif)


def test_exif_orientation_turns_the_slice_and_its_mask_upright(tmp_path):
    arr = _gradient()
    _turned(tmp_path / "a.jpg", arr, "JPEG")
    _turned(tmp_path / "a.png", arr, "PNG")
    upright = np.rot90(arr, k=-1)  # 90 degrees clockwise
    assert read_grey(tmp_path / "a.png").shape == (20, 10)
    assert np.array_equal(read_grey(tmp_path / "a.png"), upright)
    assert np.abs(read_grey(tmp_path / "a.jpg").astype(int) - upright).mean() < 8  # JPEG is lossy
    mask = np.zeros((10, 20), np.uint8)
    mask[0, :5] = 255  # top-left corner of the stored picture: top-right once turned
    _turned(tmp_path / "m.png", mask, "PNG")
    m = read_mask(tmp_path / "m.png", (20, 10))
    assert m[:5, -1].all() and m.sum() == 5


def test_a_stack_is_refused_by_name_not_read_as_its_first_page(tmp_path):
    pages = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(DataError, match=r"stack.tif: holds 2 pages or frames; export one slice per file"):
        read_grey(tmp_path / "stack.tif")


def test_a_decompression_bomb_is_one_line_naming_the_file(tmp_path, monkeypatch):
    Image.fromarray(_gradient(100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over twice the limit
    with pytest.raises(DataError, match=r"big.png: too many pixels to open safely \(over 2,000") as err:
        read_grey(tmp_path / "big.png")
    assert "\n" not in str(err.value)


def test_float_slice_with_nan_keeps_its_picture(tmp_path):
    hu = np.linspace(-1000, 400, 200, dtype=np.float32).reshape(10, 20)
    hu[3, 4] = np.nan
    Image.fromarray(hu, mode="F").save(tmp_path / "f.tif")
    grey = read_grey(tmp_path / "f.tif")
    assert grey[3, 4] == 0 and grey[0, 0] == 0 and grey[-1, -1] == 255
    assert len(np.unique(grey)) > 100  # a gradient, not the all-black slice a NaN min/max made


def _secondary_capture(path, pixels: np.ndarray, photometric="MONOCHROME2", window=None):
    """An 8-bit screenshot saved as DICOM: no rescale, Modality OT, values already grey levels."""
    ds = pydicom.dcmread(CT)
    for tag in ("RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    ds.Modality = "OT"
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if window:
        ds.WindowWidth, ds.WindowCenter = window
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(path)


def test_dicom_that_is_not_ct_is_shown_as_stored_not_as_hu(tmp_path):
    pixels = _gradient()
    _secondary_capture(tmp_path / "sc.dcm", pixels)
    assert np.array_equal(read_grey(tmp_path / "sc.dcm"), pixels)  # not the near-white a lung window of 0-250 gives
    _secondary_capture(tmp_path / "inv.dcm", pixels, photometric="MONOCHROME1")
    assert np.array_equal(read_grey(tmp_path / "inv.dcm"), 255 - pixels)  # low values are white there
    _secondary_capture(tmp_path / "win.dcm", pixels, window=(100, 50))  # its own window: 0..100 onto 0..255
    got = read_grey(tmp_path / "win.dcm")
    assert got[pixels >= 100].min() == 255 and got[pixels == 0].max() == 0


def test_compressed_dicom_without_a_decoder_is_one_line_with_the_install_hint(tmp_path):
    path = tmp_path / "lossy.dcm"
    shutil.copy(get_testdata_file("JPEG-lossy.dcm"), path)  # 12-bit JPEG: Pillow alone cannot decode it
    try:
        read_grey(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: not a readable DICOM slice")
        assert "pip install pylibjpeg" in str(exc)
    else:
        pytest.skip("a JPEG decoder plugin is installed here")


def test_slices_in_any_common_format_or_named_by_uid_are_found_and_the_rest_named(tmp_path):
    for folder in ("normal", "malignant"):
        (tmp_path / folder).mkdir()
    for ext, fmt in ((".jfif", "JPEG"), (".jpe", "JPEG"), (".webp", "WEBP"), (".gif", "GIF")):
        Image.fromarray(_gradient()).save(tmp_path / "normal" / f"a{ext}", fmt)
    shutil.copy(CT, tmp_path / "malignant" / "1.2.840.113619.2.55.3.123")  # a PACS export's UID name
    shutil.copy(CT, tmp_path / "malignant" / "SLICE0001.IMA")  # Siemens
    (tmp_path / "malignant" / "scan.heic").write_bytes(b"\0" * 64)
    (tmp_path / "malignant" / "notes.txt").write_text("not a slice, and no need to say so")
    ds = discover(tmp_path)
    assert sorted(s.path.name for s in ds.samples) == ["1.2.840.113619.2.55.3.123", "SLICE0001.IMA", "a.gif",
                                                        "a.jfif", "a.jpe", "a.webp"]
    assert is_dicom(tmp_path / "malignant" / "1.2.840.113619.2.55.3.123")
    assert read_grey(tmp_path / "malignant" / "1.2.840.113619.2.55.3.123").shape == (128, 128)
    said = [w for w in ds.warnings if "not read as slices" in w]
    assert len(said) == 1 and "1 file not read as slices (1 .heic)" in said[0] and "malignant" in said[0]
    (tmp_path / "manifest.csv").write_text("path,label\nmalignant/1.2.840.113619.2.55.3.123,2\n")
    assert [s.window is None for s in discover(tmp_path).samples] == [True]  # read as DICOM, lung window


def _patient_slice(path, pid):
    ds = pydicom.dcmread(CT)
    ds.PatientID = pid
    ds.save_as(path)


def _four_a_class(root, pid_of):
    for folder in ("normal", "malignant"):
        (root / folder).mkdir()
        for k in range(4):
            _patient_slice(root / folder / f"{folder}{k}.dcm", pid_of(folder, k))
            # the same pixels everywhere would merge them as copies; a different byte keeps them apart
            with open(root / folder / f"{folder}{k}.dcm", "ab") as f:
                f.write(bytes([k]))


def test_one_patient_id_on_every_slice_is_set_aside_so_a_test_split_exists(tmp_path):
    _four_a_class(tmp_path, lambda folder, k: "ANONYMOUS")
    ds = discover(tmp_path)
    assert ds.ids_set_aside and all(s.patient is None for s in ds.samples)
    assert any("all 8 slices with a patient id share one" in w for w in ds.warnings)
    assert "test" in split_samples(ds.samples, 0, ds.file_sha1()).values()
    report = check_dataset(tmp_path)
    assert report["classes"]["Malignant"]["test"] >= 1
    assert not any(w.startswith("no patient ids") for w in report["warnings"])  # said once, with the reason


def test_patient_ids_on_some_slices_only_are_named(tmp_path):
    _four_a_class(tmp_path, lambda folder, k: "" if k == 3 else f"{folder}-{k // 2}")
    ds = discover(tmp_path)
    assert not ds.ids_set_aside
    said = [w for w in ds.warnings if "have no patient id" in w]
    assert len(said) == 1 and said[0].startswith("2 of 8 slices have no patient id (e.g. ")


def test_data_check_names_a_stack_like_training_does(tmp_path):
    for folder in ("normal", "malignant"):
        (tmp_path / folder).mkdir()
        for k in range(3):
            Image.fromarray(_gradient() + k).save(tmp_path / folder / f"{k}.png")
    pages = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    pages[0].save(tmp_path / "normal" / "stack.tif", save_all=True, append_images=pages[1:])
    report = check_dataset(tmp_path)
    assert any("stack.tif: holds 2 pages" in e for e in report["errors"])
