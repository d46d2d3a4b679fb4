"""DICOM slices: modality LUT to HU, then a window; in class folders and CSV manifests alike."""

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
try:
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.imageio import (LUNG_WINDOW, MEDIASTINAL_WINDOW, is_dicom, parse_window, read_grey,
                                        window)
from gradfaith_tui.data.prepared import load_split
from gradfaith_tui.errors import DataError

CT = get_testdata_file("CT_small.dcm")  # bundled with pydicom: no download


def _hu():
    ds = pydicom.dcmread(CT)
    return apply_modality_lut(ds.pixel_array, ds)


def test_dicom_is_converted_to_hu_then_windowed(tmp_path):
    path = tmp_path / "slice.dcm"
    shutil.copy(CT, path)
    lung, media = read_grey(path), read_grey(path, MEDIASTINAL_WINDOW)
    assert lung.shape == (128, 128) and lung.dtype == np.uint8
    assert np.array_equal(lung, window(_hu(), *LUNG_WINDOW))
    assert np.array_equal(media, window(_hu(), *MEDIASTINAL_WINDOW))
    assert not np.array_equal(lung, media)


def test_window_presets_and_custom_values():
    assert parse_window("lung") == (1500.0, -600.0) and parse_window("Mediastinal") == (350.0, 50.0)
    assert parse_window("400,40") == parse_window("W400/L40") == (400.0, 40.0)
    with pytest.raises(DataError, match="--window: window 'bone' is not lung"):
        parse_window("bone")
    with pytest.raises(DataError, match="width must be positive"):
        parse_window("0,40")


def test_dicom_in_class_folders_with_or_without_extension(tmp_path):
    for folder in ("malignant", "normal"):
        (tmp_path / folder).mkdir()
    shutil.copy(CT, tmp_path / "malignant" / "a.dcm")
    shutil.copy(CT, tmp_path / "normal" / "IM0001")  # scanners often export without an extension
    (tmp_path / "normal" / "README").write_text("not an image")
    ds = discover(tmp_path, window=MEDIASTINAL_WINDOW)
    assert sorted((s.path.name, s.label) for s in ds.samples) == [("IM0001", 0), ("a.dcm", 2)]
    assert is_dicom(tmp_path / "normal" / "IM0001") and all(s.window == MEDIASTINAL_WINDOW for s in ds.samples)
    arr = load_split(ds.samples, 64)
    assert arr.images.shape == (2, 64, 64)


def test_dicom_window_per_row_in_a_csv(tmp_path):
    shutil.copy(CT, tmp_path / "a.dcm")
    shutil.copy(CT, tmp_path / "b.dcm")
    (tmp_path / "manifest.csv").write_text('path,label,window\na.dcm,2,mediastinal\nb.dcm,0,"400,40"\n')
    ds = discover(tmp_path)
    assert {s.case_id: s.window for s in ds.samples} == {"a.dcm": MEDIASTINAL_WINDOW, "b.dcm": (400.0, 40.0)}
    (tmp_path / "manifest.csv").write_text("path,label,window\na.dcm,2,soft\n")
    with pytest.raises(DataError, match="manifest.csv:2: window 'soft'"):
        discover(tmp_path, strict=True)


def test_broken_dicom_names_the_file(tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 10)
    with pytest.raises(DataError, match="broken.dcm: not a readable DICOM slice"):
        read_grey(bad)


def _slice_of(patient: str, path):
    ds = pydicom.dcmread(CT)
    ds.PatientID = patient
    ds.save_as(path)


def test_dicom_slices_are_split_by_a_pseudonym_of_their_patient_id(tmp_path):
    from gradfaith_tui.data.splits import split_samples

    for folder in ("malignant", "normal"):
        (tmp_path / folder).mkdir()
    for p in range(6):  # six patients of three slices each per class; one anonymised slice
        for k in range(3):
            _slice_of(f"PAT{p:03d}", tmp_path / ("malignant" if p < 3 else "normal") / f"p{p}_{k}.dcm")
    _slice_of("", tmp_path / "normal" / "anonymous.dcm")
    ds = discover(tmp_path)
    by_name = {s.path.name: s.patient for s in ds.samples}
    assert by_name["anonymous.dcm"] is None
    assert len({by_name[f"p{p}_0.dcm"] for p in range(6)}) == 6
    assert all(by_name[f"p1_{k}.dcm"] == by_name["p1_0.dcm"] for k in range(3))
    assert all(v.startswith("dcm-") and "PAT" not in v for v in by_name.values() if v)  # no identifier kept
    split = split_samples(ds.samples)
    for p in range(6):
        assert len({split[f"{'malignant' if p < 3 else 'normal'}/p{p}_{k}.dcm"] for k in range(3)}) == 1


def test_a_split_saved_before_patient_ids_were_read_is_kept_with_a_warning(tmp_path):
    from gradfaith_tui.data.prepared import prepare

    for folder in ("malignant", "normal"):
        (tmp_path / folder).mkdir()
    for p in range(4):
        for k in range(2):
            _slice_of(f"PAT{p}", tmp_path / ("malignant" if p < 2 else "normal") / f"p{p}_{k}.dcm")
    ds = discover(tmp_path)
    first = prepare(ds)
    # As an earlier version saved it: the same assignment, no patient column values.
    text = first.split_file.read_text().splitlines()
    rows = [line.split(",") for line in text[1:]]
    first.split_file.write_text("\n".join([text[0]] + [f"{r[0]},{r[1]},,{r[3]}" for r in rows]) + "\n")
    said = []
    again = prepare(discover(tmp_path), warn=said.append)
    assert again.split_hash == first.split_hash and again.assignment == first.assignment
    assert len(said) == 1 and "before 8 slices had patient ids" in said[0] and "--force" in said[0]
