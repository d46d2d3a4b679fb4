import csv

import numpy as np
import pytest

from gradfaith_tui.data.phantom import (MARKER, PhantomConfig, folder_state, generate, patient_labels, phantom_config,
                                        write_dataset)
from gradfaith_tui.errors import DataError


def test_same_seed_same_slices():
    cfg = PhantomConfig(n_patients=4, slices_per_patient=2, size=48, seed=7)
    a, b = list(generate(cfg)), list(generate(cfg))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    other = list(generate(PhantomConfig(n_patients=4, slices_per_patient=2, size=48, seed=8)))
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, other))


def test_balance_follows_shares():
    labels = patient_labels(PhantomConfig(n_patients=100, balance=(0.38, 0.11, 0.51)))
    assert np.bincount(labels).tolist() == [38, 11, 51]


def test_lesions_only_in_abnormal_classes_and_inside_the_body():
    for sl in generate(PhantomConfig(n_patients=9, slices_per_patient=2, size=64, balance=(1, 1, 1), seed=1)):
        assert sl.mask.any() == (sl.label > 0)
        if sl.label:
            ys, xs = np.nonzero(sl.mask)
            # lesions sit in a lung, well away from the image border
            assert ys.min() > 4 and xs.min() > 4 and ys.max() < 60 and xs.max() < 60
    benign = [s.mask.sum() for s in generate(PhantomConfig(n_patients=30, slices_per_patient=1, size=128, balance=(0, 1, 0)))]
    malignant = [s.mask.sum() for s in generate(PhantomConfig(n_patients=30, slices_per_patient=1, size=128, balance=(0, 0, 1)))]
    assert np.median(malignant) > 2 * np.median(benign)


def test_written_in_iqothnccd_layout_with_masks_and_manifest(tmp_path):
    cfg = PhantomConfig(n_patients=6, slices_per_patient=2, size=48, balance=(1, 1, 1), shortcut_class=2, shortcut_rate=1.0)
    n = write_dataset(cfg, tmp_path)
    assert n == 12
    assert {p.name for p in tmp_path.iterdir()} >= {"Normal cases", "Bengin cases", "Malignant cases", "masks", "manifest.csv"}
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert len(rows) == 12
    for r in rows:
        assert (tmp_path / r["path"]).is_file()
        assert bool(r["mask"]) == (r["label"] != "0")
        assert r["shortcut"] == ("1" if r["label"] == "2" else "0")
    assert (tmp_path / "Bengin cases" / "Bengin case (1).jpg").is_file()


def _corner_fill(img: np.ndarray) -> float:
    """Largest share of pure-white pixels in any corner box where the marker can sit."""
    w = max(4, img.shape[0] // 10)  # the marker's size, 2 px from the edge
    corners = [img[2:w + 2, 2:w + 2], img[2:w + 2, -w - 2:-2], img[-w - 2:-2, 2:w + 2], img[-w - 2:-2, -w - 2:-2]]
    return max(float((c >= 250).mean()) for c in corners)


def test_hu_anatomy_is_windowed_with_the_lung_preset():
    sl = next(generate(PhantomConfig(n_patients=1, slices_per_patient=1, size=128, balance=(1, 0, 0), seed=2)))
    lung = np.median(sl.image[58:68, 36:44])  # centre of the right lung: about -850 HU
    heart = np.median(sl.image[68:76, 62:70])  # soft tissue: about 40 HU
    outside = np.median(sl.image[2:10, 2:10])  # air: -1000 HU
    assert 70 < lung < 110 and 225 < heart < 250 and 50 < outside < 70
    assert sl.image[2:10, 2:10].std() > 1.5  # scanner-like noise, not flat fill


def test_adjacent_slices_of_a_patient_share_anatomy():
    sl = list(generate(PhantomConfig(n_patients=2, slices_per_patient=3, size=64, balance=(1, 0, 0))))
    corr = np.corrcoef([s.image.astype(float).ravel() for s in sl])
    within = min(corr[0, 1], corr[1, 2], corr[3, 4], corr[4, 5])
    between = max(corr[i, j] for i in range(3) for j in range(3, 6))
    assert within > between + 0.1
    assert len({s.patient for s in sl}) == 2 and not all(np.array_equal(sl[0].image, s.image) for s in sl[1:3])


def test_benign_is_smooth_or_calcified_and_malignant_irregular():
    from skimage.morphology import convex_hull_image

    def slices(balance):
        return list(generate(PhantomConfig(n_patients=12, slices_per_patient=1, size=128, balance=balance, seed=5)))

    solidity = lambda m: m.sum() / convex_hull_image(m).sum()  # noqa: E731
    benign, malignant = slices((0, 1, 0)), slices((0, 0, 1))
    smooth, irregular = (np.median([solidity(s.mask) for s in x]) for x in (benign, malignant))
    assert smooth > 0.9 and irregular < 0.9 and smooth - irregular > 0.05
    calcified = [s for s in benign if (s.image[s.mask] >= 250).mean() > 0.1]  # a dense core, white in the window
    assert 0 < len(calcified) < len(benign)


def test_shortcut_marker_sits_at_the_periphery_of_recorded_images_only():
    cfg = PhantomConfig(n_patients=30, slices_per_patient=2, size=96, balance=(1, 1, 1), seed=4,
                        shortcut_class=2, shortcut_rate=0.5)
    sl = list(generate(cfg))
    marked = [s for s in sl if s.shortcut]
    assert {s.label for s in marked} == {2}
    assert len(marked) == 10  # exactly half of the 20 Malignant slices
    assert all(_corner_fill(s.image) > 0.6 for s in marked)
    assert all(_corner_fill(s.image) < 0.2 for s in sl if not s.shortcut)  # the table may graze a corner


def test_same_seed_writes_the_same_files(tmp_path):
    cfg = PhantomConfig(n_patients=3, slices_per_patient=2, size=48, balance=(1, 1, 1), shortcut_class=1, shortcut_rate=1)
    write_dataset(cfg, tmp_path / "a")
    write_dataset(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_a_failed_write_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import gradfaith_tui.data.phantom as phantom

    def failing(cfg):
        yield next(generate(cfg))
        raise MemoryError

    monkeypatch.setattr(phantom, "generate", failing)
    cfg = PhantomConfig(n_patients=3, slices_per_patient=1, size=32)
    with pytest.raises(MemoryError):
        write_dataset(cfg, tmp_path / "new" / "ph")
    assert list(tmp_path.iterdir()) == []


def test_phantom_folders_are_told_from_other_data_also_without_the_marker(tmp_path):
    cfg = PhantomConfig(n_patients=3, slices_per_patient=1, size=32)
    assert folder_state(tmp_path / "nope") == folder_state(tmp_path) == "empty"
    write_dataset(cfg, tmp_path / "ph")
    assert phantom_config(tmp_path / "ph")["n_patients"] == 3  # what demo compares --patients with
    (tmp_path / "ph" / MARKER).unlink()  # a folder written before the marker existed
    assert phantom_config(tmp_path / "ph") is None
    assert folder_state(tmp_path / "ph") == "phantoms"  # demo reuses it
    with pytest.raises(DataError, match="made before they were marked"):  # but --force deletes only marked ones
        write_dataset(cfg, tmp_path / "ph", replace=True)
    assert (tmp_path / "ph" / "manifest.csv").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.csv").write_text("path,label\na.png,0\n")
    assert folder_state(tmp_path / "other") == "other"
    with pytest.raises(DataError, match="holds other data"):
        write_dataset(cfg, tmp_path / "other", replace=True)
