"""A checkpoint trained on another split, used with --force: refused without it naming both splits, and with it
said in a warning, recorded in the cache (older caches gain the column) and shown by the report and explorer."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from gradfaith_tui.config import CamSettings
from gradfaith_tui.errors import CheckpointError
from gradfaith_tui.pipeline import precompute
from gradfaith_tui.report import markdown
from gradfaith_tui.report.build import build
from gradfaith_tui.report.terminal import print_report
from gradfaith_tui.store.leakage import trained_elsewhere
from gradfaith_tui.store.reader import CacheReader

OTHER = "0123456789abcdef"
NO_SANITY = CamSettings(sanity_cases=0)


def _resplit(trained: Path, dest: Path) -> tuple[Path, str]:
    """resnet10t/seed0 alone, its card saying it was trained on another split of the same data; and the real one."""
    out = Path(shutil.copytree(trained / "resnet10t" / "seed0", dest / "resnet10t" / "seed0"))
    card = json.loads((out / "card.json").read_text())
    (out / "card.json").write_text(json.dumps({**card, "split_hash": OTHER}))
    return dest, card["split_hash"]


def _old_cache(cache: Path, dest: Path) -> Path:
    """The session's cache as a version before trained_elsewhere wrote it."""
    copy = Path(shutil.copytree(cache, dest))
    con = sqlite3.connect(copy / "audit.sqlite")
    con.execute("ALTER TABLE models DROP COLUMN trained_elsewhere")
    con.commit()
    con.close()
    return copy


def _report_text(root: Path) -> tuple[list[str], str, str]:
    reader = CacheReader(root)
    try:
        r = build(reader)
    finally:
        reader.close()
    out = io.StringIO()
    print_report(r, Console(file=out, width=400, color_system=None))
    return r.incomplete, markdown.render(r), out.getvalue()


def test_another_split_is_refused_naming_both_and_forced_it_is_recorded_and_reported(phantoms, trained, cache, tmp_path):
    ck, split = _resplit(trained, tmp_path / "ck")
    root = _old_cache(cache, tmp_path / "cache")
    assert trained_elsewhere(sqlite3.connect(root / "audit.sqlite")) == {}  # an older cache reads as before
    assert not any("another split" in c for c in _report_text(root)[0])
    with pytest.raises(CheckpointError, match=rf"resnet10t/seed0: trained on another split of these data \(split "
                                              rf"{OTHER}, now {split}; .*\); retrain, or pass --force$"):
        precompute(phantoms, ck, root, cam=NO_SANITY, warn=lambda m: None, with_timing=False)
    said: list[str] = []
    precompute(phantoms, ck, root, cam=NO_SANITY, force=True, warn=said.append, with_timing=False)
    told = [w for w in said if "another split" in w]
    assert len(told) == 1 and told[0].startswith(f"resnet10t/seed0: trained on another split of these data (split {OTHER}")
    assert "may include training cases" in told[0] and "\n" not in told[0]
    gaps = trained_elsewhere(sqlite3.connect(root / "audit.sqlite"))
    assert list(gaps) == ["resnet10t/seed0"] and OTHER in gaps["resnet10t/seed0"] and split in gaps["resnet10t/seed0"]
    first, md, terminal = _report_text(root)
    assert first[0].startswith(f"Trained on another split: resnet10t/seed0 was trained on another split of these "
                                 f"data (split {OTHER}, now {split}")
    assert "test metrics may include training cases" in first[0]
    assert "**Read this first.** Trained on another split: resnet10t/seed0" in md and "Trained on another split: resnet10t/seed0" in terminal
    # retrained on this split (here: the real checkpoint), a rerun without --force clears the mark
    precompute(phantoms, trained, root, names=["resnet10t"], seeds=[0], cam=NO_SANITY, warn=lambda m: None,
               with_timing=False)
    assert trained_elsewhere(sqlite3.connect(root / "audit.sqlite")) == {}


def test_evaluate_refuses_another_split_and_forced_marks_it_for_the_report(phantoms, trained, cache, tmp_path):
    from typer.testing import CliRunner

    from gradfaith_tui.cli import app
    from gradfaith_tui.models.evaluate_all import evaluate_all

    ck, split = _resplit(trained, tmp_path / "ck")
    with pytest.raises(CheckpointError, match=rf"trained on another split of these data \(split {OTHER}, now {split}"):
        evaluate_all(phantoms, ck, None, None, warn=lambda m: None)
    root = Path(shutil.copytree(cache, tmp_path / "cache"))
    res = CliRunner().invoke(app, ["evaluate", "--data", str(phantoms), "--checkpoints", str(ck), "--cache", str(root),
                                   "--force"])
    assert res.exit_code == 0, res.output
    assert "resnet10t/seed0: trained on another split of these data" in " ".join(res.output.split())
    assert json.loads((root / "evaluation.json").read_text())["resnet10t/seed0"]["trained_on_other_split"] == OTHER
    gaps = trained_elsewhere(sqlite3.connect(root / "audit.sqlite"))
    assert gaps == {"resnet10t/seed0": f"on another split of these data (split {OTHER})"}
    assert _report_text(root)[0][0].startswith("Trained on another split: resnet10t/seed0")


def test_a_cache_of_another_split_of_these_data_is_refused_naming_both_splits(phantoms, trained, cache, tmp_path):
    from gradfaith_tui.errors import CacheError
    from gradfaith_tui.store.exports import check_evaluation_data

    card = json.loads((trained / "resnet10t" / "seed0" / "card.json").read_text())
    root = Path(shutil.copytree(cache, tmp_path / "cache"))
    con = sqlite3.connect(root / "audit.sqlite")
    con.execute("UPDATE meta SET value = ? WHERE key = 'split_hash'", (OTHER,))
    con.commit()
    con.close()
    said = rf"{root}: cache was built from another split of these data \(split {OTHER}, now {card['split_hash']}\); "
    with pytest.raises(CacheError, match=said + "use a new --cache folder$"):  # not one fingerprint twice
        precompute(phantoms, trained, root, names=["resnet10t"], seeds=[0], cam=NO_SANITY, warn=lambda m: None,
                   with_timing=False)
    with pytest.raises(CacheError, match=said):  # evaluate's check
        check_evaluation_data(root, [((card["data_fingerprint"],), card["split_hash"])])
