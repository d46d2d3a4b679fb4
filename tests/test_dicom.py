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
    for text in ("nan,40", "400,nan", "inf,40", "400,-inf"):  # float() takes these; a window cannot
        with pytest.raises(DataError, match="--window: window width and level must be finite numbers"):
            parse_window(text)


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


def _patients_dataset(root, n=4, per=2):
    for folder in ("malignant", "normal"):
        (root / folder).mkdir(parents=True)
    for p in range(n):
        for k in range(per):
            _slice_of(f"PAT{p:03d}", root / ("malignant" if p < n // 2 else "normal") / f"p{p}_{k}.dcm")
    return root


def _unkeyed(pid: str) -> str:  # how pseudonyms were made before they were keyed
    import hashlib

    return f"dcm-{hashlib.sha1(pid.encode()).hexdigest()[:12]}"


def test_pseudonyms_are_keyed_per_dataset_and_stable(tmp_path):
    import hashlib
    import hmac
    import stat

    a, b = _patients_dataset(tmp_path / "a"), _patients_dataset(tmp_path / "b")
    first = {s.case_id: s.patient for s in discover(a).samples}
    key_file = a / "splits" / "pseudonym.key"
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert len(key) == 32
    pid0 = first["malignant/p0_0.dcm"]
    # Not the unkeyed hash an ID guess can be checked against; only the key recomputes it.
    assert pid0 != _unkeyed("PAT000") and all(v != _unkeyed(f"PAT{p:03d}") for p in range(4) for v in first.values())
    assert pid0 == "dcm-" + hmac.new(key, b"PAT000", hashlib.sha256).hexdigest()[:12]
    assert pid0 != "dcm-" + hmac.new(b"\0" * 32, b"PAT000", hashlib.sha256).hexdigest()[:12]
    assert {s.case_id: s.patient for s in discover(a).samples} == first  # the key is read back, not remade
    assert key_file.read_text() == key.hex() + "\n"
    # Another dataset with the same IDs gets its own key, so its pseudonyms cannot be linked to these.
    other = {s.case_id: s.patient for s in discover(b).samples}
    assert (b / "splits" / "pseudonym.key").read_text() != key_file.read_text()
    assert not set(other.values()) & set(first.values())


def test_no_key_without_a_patient_id(tmp_path):
    from PIL import Image

    from gradfaith_tui.data.prepared import prepare

    for folder in ("malignant", "normal"):
        (tmp_path / folder).mkdir()
        for i in range(5):
            Image.new("RGB", (16, 16), (i * 40,) * 3).save(tmp_path / folder / f"{i}.jpg")
    _slice_of("", tmp_path / "normal" / "anonymous.dcm")
    prep = prepare(discover(tmp_path))
    assert prep.split_file.is_file() and not (tmp_path / "splits" / "pseudonym.key").exists()


def test_read_only_data_keeps_the_key_in_the_cache_folder(tmp_path, monkeypatch):
    import os

    from gradfaith_tui.data.splitfile import fallback_dir_of

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _patients_dataset(tmp_path / "data")
    root.chmod(0o555)
    try:
        ds = discover(root)
        key_file = fallback_dir_of(root) / "pseudonym.key"
        assert key_file.is_file() and not (root / "splits").exists()
        assert any("not writable" in w and str(key_file) in w for w in ds.warnings)
        again = discover(root)
        assert [s.patient for s in again.samples] == [s.patient for s in ds.samples]
        assert not any("pseudonym" in w for w in again.warnings)
    finally:
        root.chmod(0o755)
    # A key beside the data wins over the cached one once the folder is writable and has one.
    (root / "splits").mkdir()
    (root / "splits" / "pseudonym.key").write_text("ab" * 32 + "\n")
    assert [s.patient for s in discover(root).samples] != [s.patient for s in ds.samples]


def test_an_unreadable_key_is_an_error_not_a_new_key(tmp_path):
    root = _patients_dataset(tmp_path)
    (root / "splits").mkdir()
    (root / "splits" / "pseudonym.key").write_text("not hex")
    with pytest.raises(DataError, match="pseudonym.key: not a pseudonym key"):
        discover(root)


def _rewrite_patients(split_file, patient_of, also=lambda r: None):
    import csv

    with split_file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["patient"] = patient_of(r)
        also(r)
    with split_file.open("w", newline="") as f:
        w = csv.DictWriter(f, ["case_id", "label", "patient", "split"])
        w.writeheader()
        w.writerows(rows)
    return rows


def test_a_split_with_unkeyed_pseudonyms_is_kept_with_a_warning(tmp_path):
    from gradfaith_tui.data.prepared import prepare

    root = _patients_dataset(tmp_path)
    first = prepare(discover(root))
    pid = lambda r: f"PAT{int(r['case_id'].split('/p')[1].split('_')[0]):03d}"  # noqa: E731
    _rewrite_patients(first.split_file, lambda r: _unkeyed(pid(r)))  # as an earlier version saved it
    said = []
    again = prepare(discover(root), warn=said.append)
    assert again.assignment == first.assignment and again.split_hash == first.split_hash
    assert len(said) == 1 and "older patient pseudonyms (8 slices" in said[0]
    assert "reversed by trying IDs" in said[0] and "--force" in said[0]
    # The old pseudonyms must group the slices as today's do: two patients merged is a real change.
    _rewrite_patients(first.split_file, lambda r: _unkeyed("PAT000" if pid(r) == "PAT001" else pid(r)))
    with pytest.raises(DataError, match="4 with another label or patient"):
        prepare(discover(root))
    # A real label change is still refused, old pseudonyms or not.
    relabel = "malignant/p0_0.dcm"
    _rewrite_patients(first.split_file, lambda r: _unkeyed(pid(r)),
                      lambda r: r.update(label="0") if r["case_id"] == relabel else None)
    with pytest.raises(DataError, match=f"1 with another label or patient \\(e.g. {relabel}\\)"):
        prepare(discover(root))


def test_key_falls_back_where_splits_cannot_be_made(tmp_path, monkeypatch):
    # The read-only case above, in a form that also runs as root: `splits` is a file, not a folder.
    from gradfaith_tui.data.splitfile import fallback_dir_of

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _patients_dataset(tmp_path / "data")
    (root / "splits").write_text("")
    ds = discover(root)
    key_file = fallback_dir_of(root) / "pseudonym.key"
    assert key_file.is_file() and any(str(key_file) in w for w in ds.warnings)
    assert [s.patient for s in discover(root).samples] == [s.patient for s in ds.samples]


def test_train_and_precompute_take_the_window_and_a_different_one_is_other_data(tmp_path):
    """--window reached train, evaluate, precompute and import, not `data check` alone: the slices differ, so
    models trained under one window are refused on the other, naming the change."""
    from gradfaith_tui.config import spec_for
    from gradfaith_tui.errors import CheckpointError
    from gradfaith_tui.models.evaluate_all import evaluate_all
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import TrainConfig
    from gradfaith_tui.pipeline import precompute

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for k, folder in enumerate(("normal", "benign", "malignant")):
        (data / folder).mkdir(parents=True)
        for i in range(5):  # distinct slices (no identical files), distinct patients
            ds = pydicom.dcmread(CT)
            px = ds.pixel_array.astype(np.int16) + rng.integers(-40, 40, ds.pixel_array.shape).astype(np.int16)
            ds.PixelData = px.astype(ds.pixel_array.dtype).tobytes()
            ds.PatientID = f"P{k}{i}"
            ds.save_as(data / folder / f"{i}.dcm")
    ckpt = tmp_path / "ckpt"
    fit_all(data, ckpt, [spec_for("resnet10t")], [0], TrainConfig(epochs=1, batch_size=4, lr=1e-3, img_size=32),
            window=MEDIASTINAL_WINDOW)
    with pytest.raises(CheckpointError, match="trained on other data"):
        precompute(data, ckpt, tmp_path / "c", warn=lambda m: None)  # the lung window by default: other slices
    with pytest.raises(CheckpointError, match="trained on other data"):
        evaluate_all(data, ckpt, None, None, warn=lambda m: None)
    precompute(data, ckpt, tmp_path / "c", warn=lambda m: None, with_timing=False, window=MEDIASTINAL_WINDOW)
    assert (tmp_path / "c" / "audit.sqlite").is_file()
    assert evaluate_all(data, ckpt, None, None, warn=lambda m: None, window=MEDIASTINAL_WINDOW)


def test_the_default_window_given_explicitly_is_the_same_data(tmp_path):
    for folder in ("malignant", "normal"):
        (tmp_path / folder).mkdir()
        shutil.copy(CT, tmp_path / folder / "a.dcm")
    assert discover(tmp_path, window=parse_window("lung")).fingerprint() == discover(tmp_path).fingerprint()
    assert discover(tmp_path, window=MEDIASTINAL_WINDOW).fingerprint() != discover(tmp_path).fingerprint()
