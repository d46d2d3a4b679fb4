import csv

import numpy as np

from gradfaith_tui.data.phantom import PhantomConfig, generate, patient_labels, write_dataset


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
