"""The saved split manifest: written once, reused, and a clear error when the data changed."""

import csv

import pytest
from PIL import Image
from typer.testing import CliRunner

from gradfaith_tui.cli.data import app
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import prepare
from gradfaith_tui.errors import DataError


def _dataset(root, n=10):
    for folder, value in (("Normal cases", 60), ("Bengin cases", 120), ("Malignant cases", 200)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("L", (16, 16), value + i).save(root / folder / f"{i}.png")
    return root


def test_first_use_saves_the_split_and_later_uses_read_it(tmp_path):
    root = _dataset(tmp_path)
    prep = prepare(discover(root), 0)
    assert prep.split_file == root / "splits" / "split-seed0.csv"
    rows = list(csv.DictReader(prep.split_file.open()))
    assert len(rows) == 30 and set(rows[0]) == {"case_id", "label", "patient", "split"}
    # a hand-edited assignment is honoured, not recomputed: the file is the truth
    moved = next(r for r in rows if r["split"] == "train")
    moved["split"] = "test"
    with prep.split_file.open("w", newline="") as f:
        w = csv.DictWriter(f, ["case_id", "label", "patient", "split"])
        w.writeheader()
        w.writerows(rows)
    again = prepare(discover(root), 0)
    assert again.assignment[moved["case_id"]] == "test" and again.split_hash != prep.split_hash
    assert prepare(discover(root), 1).split_file.name == "split-seed1.csv"


def test_changed_data_is_an_error_not_a_silent_resplit(tmp_path):
    root = _dataset(tmp_path)
    prepare(discover(root), 0)
    Image.new("L", (16, 16), 9).save(root / "Normal cases" / "new.png")
    with pytest.raises(DataError, match=r"split-seed0.csv: the data no longer matches this saved split: "
                                         r"1 added \(e.g. Normal cases/new.png\).*data split .* --force"):
        prepare(discover(root), 0)
    (root / "Normal cases" / "new.png").rename(root / "Malignant cases" / "new.png")
    (root / "Normal cases" / "0.png").rename(root / "Bengin cases" / "moved.png")
    with pytest.raises(DataError, match="2 added .* 1 removed"):
        prepare(discover(root), 0)
    result = CliRunner().invoke(app, ["split", str(root), "--force"])
    assert result.exit_code == 0 and "saved" in result.output
    assert len(prepare(discover(root), 0).assignment) == 31


def test_relabelled_file_is_detected(tmp_path):
    root = tmp_path
    for i, label in enumerate((0, 1, 2) * 3):
        Image.new("L", (8, 8), i * 20).save(root / f"{i}.png")
    text = "path,label\n" + "".join(f"{i}.png,{label}\n" for i, label in enumerate((0, 1, 2) * 3))
    (root / "manifest.csv").write_text(text)
    prepare(discover(root), 0)
    (root / "manifest.csv").write_text(text.replace("4.png,1", "4.png,2"))
    with pytest.raises(DataError, match=r"1 with another label or patient \(e.g. 4.png\)"):
        prepare(discover(root), 0)


def test_read_only_data_folder_falls_back_and_says_so(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "data")
    (root / "splits").write_text("a file where the folder would go")  # not writable as a folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    notes = []
    prep = prepare(discover(root), 0, warn=notes.append)
    assert prep.split_file.is_relative_to(tmp_path / "cache" / "gradfaith-tui" / "splits")
    assert "not writable; split saved to" in notes[0]
    assert prepare(discover(root), 0, warn=notes.append).split_hash == prep.split_hash and len(notes) == 1


def test_a_csv_given_as_data_gets_its_own_split_file(tmp_path):
    for i in range(6):
        Image.new("L", (8, 8), i * 30).save(tmp_path / f"{i}.png")
    (tmp_path / "cohort.csv").write_text("path,label\n" + "".join(f"{i}.png,{i % 3}\n" for i in range(6)))
    assert prepare(discover(tmp_path / "cohort.csv"), 0).split_file == tmp_path / "splits" / "cohort-split-seed0.csv"


@pytest.mark.parametrize("content", ["", "case_id,label,patient,split\n"], ids=["empty", "header-only"])
def test_an_empty_saved_split_is_named_as_empty_not_as_every_file_added(tmp_path, content):
    root = _dataset(tmp_path)
    path = prepare(discover(root), 0).split_file
    path.write_text(content)
    with pytest.raises(DataError, match=rf"^{path}: the saved split is empty \(no cases\)"):
        prepare(discover(root), 0)


def test_a_folder_where_the_split_goes_is_named_not_passed_over_for_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = _dataset(tmp_path / "d")
    (root / "splits" / "split-seed0.csv").mkdir(parents=True)
    warned = []
    with pytest.raises(DataError, match=r"split-seed0.csv: a folder \(or other non-file\) where the saved split goes"):
        prepare(discover(root), 0, warned.append)
    assert not warned and not (tmp_path / "xdg").exists()  # once: "not writable; split saved to ~/.cache/..."
    result = CliRunner().invoke(app, ["split", str(root), "--force"])  # --force writes without reading
    assert isinstance(result.exception, DataError) and "a folder (or other non-file)" in str(result.exception)


def test_a_split_with_no_test_images_is_not_usable_and_evaluate_names_the_split_file(tmp_path):
    from gradfaith_tui.data.check import check_dataset
    from gradfaith_tui.data.prepared import load_split

    root = _dataset(tmp_path)
    prep = prepare(discover(root), 0)
    text = prep.split_file.read_text()
    prep.split_file.write_text(text.replace(",test\r\n", ",val\r\n").replace(",test\n", ",val\n"))
    report = check_dataset(root)
    assert not report["usable"]  # once: "usable", with one warning per class
    assert "the test split holds no images: too few slices or patients" in " ".join(report["errors"])
    prep = prepare(discover(root), 0)
    with pytest.raises(DataError, match=rf"^the test split of {prep.split_file} holds no readable images \(no images "
                                        r"are assigned to it"):
        load_split(prep.samples(discover(root), "test"), 16, split="test", source=prep.split_file)
