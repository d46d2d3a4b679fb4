"""Reports of caches with gaps: several methods, a precompute stopped early, one seed, models without maps; and
report folders with something in the way. Each says what it shows of which maps, and never mixes them."""

from __future__ import annotations

import errno
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.report import markdown
from gradfaith_tui.report.build import build
from gradfaith_tui.report.write import write_report
from gradfaith_tui.store.reader import CacheReader


def _copy(cache: Path, dest: Path, *sql: tuple) -> Path:
    copy = Path(shutil.copytree(cache, dest))
    con = sqlite3.connect(copy / "audit.sqlite")
    for statement in sql:
        con.execute(*statement)
    con.commit()
    con.close()
    return copy


@pytest.fixture(scope="module")
def two_methods(phantoms, trained, cache, tmp_path_factory) -> Path:
    """The session's Grad-CAM cache plus Grad-CAM++ maps of resnet10t alone; Grad-CAM++ fails its sanity check
    and Grad-CAM passes (set so: the tiny models' own verdicts are not what is tested)."""
    from gradfaith_tui.config import CamSettings
    from gradfaith_tui.pipeline import precompute

    root = Path(shutil.copytree(cache, tmp_path_factory.mktemp("two") / "c"))
    precompute(phantoms, trained, root, names=["resnet10t"], cam=CamSettings(method="gradcam++", sanity_cases=2),
               warn=lambda m: None, with_timing=False)
    con = sqlite3.connect(root / "audit.sqlite")
    con.execute("UPDATE sanity SET spearman = CASE method WHEN 'gradcam' THEN 0.0 ELSE 0.9 END")
    expl = con.execute("SELECT expl_id FROM explanations WHERE method = 'gradcam++'").fetchone()[0]
    con.execute("INSERT OR REPLACE INTO suspects VALUES (?, 'resnet10t/seed0', 0, 'border', 0.99, '99% of heat in the "
                "image border band')", (expl,))  # one at least, whatever the tiny model's maps gave
    con.commit()
    con.close()
    return root


def _suspects_of(root: Path, method: str) -> int:
    con = sqlite3.connect(root / "audit.sqlite")
    n = con.execute("SELECT COUNT(*) FROM suspects s JOIN explanations e USING (expl_id) WHERE e.method=?",
                    (method,)).fetchone()[0]
    con.close()
    return n


def test_each_methods_report_shows_its_own_checks_and_names_the_others(two_methods):
    r = build(CacheReader(two_methods))  # Grad-CAM, the default
    assert r.method == "gradcam" and {s.method for s in r.sanity.results} == {"gradcam"}
    assert r.sanity.other_methods == ["gradcam++"] and all(s.passed for s in r.sanity.results)
    assert "Sanity check (maps of progressively randomised weights): every model passes." in r.findings
    assert r.suspects.total == _suspects_of(two_methods, "gradcam") == sum(sum(c.values()) for c in r.suspects.counts.values())
    assert ("resnet10t/seed0", "border", 0.99) not in [(e["model_id"], e["rule"], e["value"]) for e in r.suspects.examples]
    text = markdown.render(r)
    sanity = text.split("## Sanity check", 1)[1].split("## Shortcut suspects")[0]
    assert "gradcam++ |" not in sanity and "`gradfaith-tui report --method gradcam++` reports them" in sanity

    pp = build(CacheReader(two_methods, "gradcam++"))
    assert {s.method for s in pp.sanity.results} == {"gradcam++"} and pp.sanity.other_methods == ["gradcam"]
    assert [s.model_id for s in pp.sanity.results if not s.passed] == ["resnet10t/seed0"]
    assert any(f.startswith("Sanity check") and "resnet10t/seed0 fails" in f for f in pp.findings)
    assert pp.suspects.total == _suspects_of(two_methods, "gradcam++")


def test_a_model_without_maps_of_the_method_is_a_caveat_not_a_row_of_zeros(two_methods, monkeypatch):
    from matplotlib.axes import Axes

    pp = build(CacheReader(two_methods, "gradcam++"))
    assert pp.caveats[0] == ("vit-tiny-p8 has no gradcam++ maps in this cache, so its columns are empty and no metric "
                             "below is of it: `gradfaith-tui precompute --method gradcam++ --models vit-tiny-p8` "
                             "computes them.")
    assert {s.model for s in pp.metric_stats} == {"resnet10t"}
    assert not [p for p in pp.paired if "vit-tiny-p8" in (p.a, p.b)]
    assert not [c for c in build(CacheReader(two_methods)).caveats if "has no gradcam maps" in c]

    labels = []
    original = Axes.text

    def text(self, x, y, s, *a, **k):
        labels.append((s, k.get("color"), (k.get("bbox") or {}).get("facecolor")))
        return original(self, x, y, s, *a, **k)

    monkeypatch.setattr(Axes, "text", text)
    from gradfaith_tui.report.case_grid import case_grid

    reader = CacheReader(two_methods, "gradcam++")
    assert case_grid(pp, reader, [0, 1], Path(two_methods) / "grid.png")
    assert labels.count(("no map", "white", "black")) == 2  # one per case, white on a dark box, not on tissue


def test_an_interrupted_precompute_says_which_stages_it_did_not_reach(cache, tmp_path):
    reader = CacheReader(cache)
    names = [c.model.name for c in reader.columns]
    first = reader.columns[0]
    reader.close()
    copy = _copy(cache, tmp_path / "c", ("DELETE FROM sanity", ()),
                 ("DELETE FROM evaluation WHERE model_id = ?", (first.model.model_id,)),
                 ("DELETE FROM metrics WHERE name = 'consist' AND expl_id = ?", (first.expl_id,)))
    r = build(CacheReader(copy))
    assert r.incomplete == [f"The cache is incomplete: its maps are whole, but precompute stopped before Table I of "
                            f"{names[0]}, Consist of {names[0]} and the sanity check of {', '.join(names)}; rerun "
                            f"`gradfaith-tui precompute` to finish it (it computes only what is missing)."]
    assert markdown.render(r).index("**Read this first.**") < markdown.render(r).index("## What the audit found")

    con = sqlite3.connect(copy / "audit.sqlite")  # a run asked for no sanity check: none is missing
    config = json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    config["cam"]["sanity_cases"] = 0
    con.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(config),))
    con.commit()
    con.close()
    assert "sanity" not in build(CacheReader(copy)).incomplete[0]


def test_a_partly_computed_cache_counts_each_model_on_what_it_computed(cache, tmp_path):
    reader = CacheReader(cache)
    first, second = reader.columns
    n = reader.n_cases
    marked = {i for (i,) in reader.con.execute("SELECT idx FROM cases WHERE shortcut = 1")}
    reader.close()
    keep = n // 2
    done = sorted(set(range(keep)) | marked)  # a stop part way, the marked cases among those done
    left = f"idx NOT IN ({','.join(map(str, done))})"
    copy = _copy(cache, tmp_path / "c",
                 (f"DELETE FROM metrics WHERE expl_id = ? AND {left}", (first.expl_id,)),
                 (f"DELETE FROM suspects WHERE expl_id = ? AND {left}", (first.expl_id,)),
                 (f"DELETE FROM predictions WHERE model_id = ? AND {left}", (first.model.model_id,)),
                 ("DELETE FROM predictions WHERE model_id = ?", (second.model.model_id,)))
    r = build(CacheReader(copy))
    assert r.incomplete[0].startswith(f"The cache is incomplete: {len(done) + n:,} of {2 * n:,} maps (cases x shown "
                                      f"models) are computed ({first.model.name} {len(done)}/{n}, {second.model.name} "
                                      f"{n}/{n} cases)")
    notes = " ".join(r.class_notes)
    assert second.model.name not in notes  # no predictions: nothing to count, not "0 wrong"
    if notes:
        assert re.search(rf"{first.model.name} \d+ of {len(done)} cases", notes)
    row = next(p for p in r.planted.rows if p.model_id == first.model.model_id)
    assert row.marked == len(marked) and row.unmarked == len(done) - len(marked)  # of the cases explained, not all


def test_one_seed_says_what_consist_needs(cache, tmp_path):
    copy = _copy(cache, tmp_path / "c", ("DELETE FROM models WHERE seed != 0", ()),
                 ("DELETE FROM metrics WHERE name = 'consist'", ()))
    r = build(CacheReader(copy))
    assert not [s for s in r.metric_stats if s.metric == "consist"]
    assert ("Consist (agreement of maps across training seeds) needs two seeds of a model; resnet10t and vit-tiny-p8 "
            "have one in this cache: `gradfaith-tui train --seeds 0,1`, then `precompute`, adds it.") in r.findings
    assert not r.incomplete  # one seed has no Consist to wait for
    assert not [f for f in build(CacheReader(cache)).findings if "needs two seeds" in f]


def test_what_stands_in_the_report_folders_way_is_named_before_anything_moves(cache, tmp_path):
    out = tmp_path / "rep"
    (out / "report.md").mkdir(parents=True)
    with pytest.raises(GradfaithError, match=rf"^--out: {re.escape(str(out / 'report.md'))} is a folder where the "
                                             r"report's file goes; move it away or choose another --out$"):
        write_report(CacheReader(cache), out, "all")
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]  # no figures moved in beside it

    other = tmp_path / "rep2"
    other.mkdir()
    (other / "figures").write_text("mine")
    with pytest.raises(GradfaithError, match=r"figures is a file where the report's figures go"):
        write_report(CacheReader(cache), other, "md")
    assert (other / "figures").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["figures"]


def test_an_unwritable_out_names_it_not_the_hidden_staging_folder(cache, tmp_path, monkeypatch):
    import tempfile

    def denied(*a, dir=None, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / ".report-x1y2"))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(GradfaithError) as err:
        write_report(CacheReader(cache), tmp_path / "ro", "md")
    assert str(err.value) == f"--out: cannot write the report into {tmp_path / 'ro'} (Permission denied)"


def test_a_database_damaged_past_its_header_is_named_and_leaves_no_report_folder(cache, tmp_path):
    copy = Path(shutil.copytree(cache, tmp_path / "c"))
    db = copy / "audit.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(2 * page, len(data) - page, page):  # every page past the first two: the tables' contents
        data[start + 8:start + page] = b"\xa5" * (page - 8)
    db.write_bytes(bytes(data))
    out = tmp_path / "rep"
    with pytest.raises(GradfaithError, match=re.escape(str(db))):
        write_report(CacheReader(copy), out, "md")
    assert not out.exists()


def test_one_format_removes_the_other_formats_older_file(cache, tmp_path):
    out = tmp_path / "rep"
    write_report(CacheReader(cache), out, "all")
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    write_report(CacheReader(cache), out, "md")
    assert (out / "report.md").is_file() and not (out / "report.html").exists()
    write_report(CacheReader(cache), out, "html")
    assert (out / "report.html").is_file() and not (out / "report.md").exists()
