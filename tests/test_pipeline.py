import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gradfaith_tui.config import CamSettings
from gradfaith_tui.errors import CacheError, CheckpointError
from gradfaith_tui.pipeline import precompute
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.records import CaseInfo
from gradfaith_tui.store.writer import CacheWriter
from tests.conftest import TINY_MODELS


def assert_same_metrics(got_cache: Path, want_cache: Path, model_id: str, tol: float = 1e-5) -> None:
    """Every stored metric of one model (Consist aside: it depends on the other seeds) equal to tol."""
    query = ("SELECT m.idx, m.name, m.value FROM metrics m JOIN explanations e ON e.expl_id = m.expl_id "
             "WHERE e.model_id = ? AND m.name != 'consist' ORDER BY m.idx, m.name")
    got = sqlite3.connect(got_cache / "audit.sqlite").execute(query, (model_id,)).fetchall()
    want = sqlite3.connect(want_cache / "audit.sqlite").execute(query, (model_id,)).fetchall()
    assert len(got) == len(want) > 0
    for (i, name, a), (j, name2, b) in zip(got, want):
        assert (i, name) == (j, name2)
        assert (a is None and b is None) or a == pytest.approx(b, abs=tol), (i, name)


def test_cache_holds_every_case_model_and_metric(cache, phantoms):
    r = CacheReader(cache)
    assert [c.model.name for c in r.columns] == TINY_MODELS
    assert len(r.models) == 4  # two seeds each
    rows = r.rows(range(r.n_cases))
    assert len(rows) == r.n_cases > 0
    seed1 = {(m, i): p for m, i, p in r.con.execute("SELECT model_id, idx, pred FROM predictions")}
    for row in rows:
        for name in TINY_MODELS:
            res = row.results[name]
            assert res.pred in (0, 1, 2) and 0 <= res.confidence <= 1
            assert -1 <= res.metrics["faith"] <= 1
            if seed1[(f"{name}/seed1", row.idx)] == res.pred:  # both maps explain one class: eq. 6 applies
                assert 0 <= res.metrics["consist"] <= 1
            else:  # the other seed explains another class: no Consist
                assert res.metrics["consist"] is None
            if row.has_mask:
                assert 0 <= res.metrics["locacc"] <= 1
            else:
                assert res.metrics["locacc"] is None
    col = r.columns[0]
    m = r.heatmap(col.expl_id, 0)
    assert m.shape == (2, 2) and np.nanmax(m) <= 1  # resnet10t at 32 px, output stride 16
    assert r.image(0).shape == (32, 32) and r.mask(0).dtype == bool
    ev = r.evaluation()
    assert set(ev) == {f"{n}/seed{s}" for n in TINY_MODELS for s in (0, 1)}
    assert sum(map(sum, ev["resnet10t/seed0"]["confusion"])) == r.n_cases


def test_sort_by_lowest_faith_worst_across_models(cache):
    from gradfaith_tui.store.arrays import CaseArrays

    r = CacheReader(cache)
    arrays = CaseArrays(r.con, r.columns, r.n_cases)  # the explorer's sorts, on what precompute wrote
    worst = [row.worst("faith") for row in r.rows(arrays.order("faith"))]
    assert worst == sorted(worst)
    loc = [row.worst("locacc") for row in r.rows(arrays.order("locacc"))]
    present = [v for v in loc if v is not None]
    assert present == sorted(present) and loc[: len(present)] == present, "cases without a mask sort last"


def test_rerun_computes_only_what_is_missing(cache, phantoms, trained):
    con = sqlite3.connect(cache / "audit.sqlite")
    with con:
        con.execute("DELETE FROM metrics WHERE idx IN (0, 1) AND expl_id = 1")
    n_before = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    calls = []
    precompute(phantoms, trained, cache, warn=lambda m: None, with_timing=False,
               progress=lambda mid, done, total: calls.append((mid, done, total)))
    first = {mid: done for mid, done, total in calls if (mid, done) == (mid, min(d for m2, d, _ in calls if m2 == mid))}
    total = calls[0][2]
    assert first["resnet10t/seed0"] == total - 2, "only the two deleted cases are recomputed"
    assert first["vit-tiny-p8/seed1"] == total
    assert con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] > n_before


def test_stale_cache_and_other_data_are_refused(cache, trained, tmp_path):
    from gradfaith_tui.data.phantom import PhantomConfig, write_dataset

    other = tmp_path / "other"
    write_dataset(PhantomConfig(n_patients=9, slices_per_patient=2, size=48, balance=(1, 1, 1), seed=99), other)
    with pytest.raises(CheckpointError, match="trained on other data"):
        precompute(other, trained, tmp_path / "c", warn=lambda m: None)
    with pytest.raises(CacheError, match="other data"):
        precompute(other, trained, cache, force=True, warn=lambda m: None)


def test_the_same_images_one_folder_down_are_named_as_such_and_get_no_split_file(phantoms, trained, tmp_path):
    """Passing the folder above the one trained on changes every case id: refused, with both --data named, before
    a split file is written into the user's folder."""
    import shutil

    from gradfaith_tui.models.evaluate_all import evaluate_all

    outer = tmp_path / "outer"
    shutil.copytree(phantoms, outer / "inner", ignore=shutil.ignore_patterns("manifest.csv"))
    for run in (lambda: precompute(outer, trained, tmp_path / "c", warn=lambda m: None),
                lambda: evaluate_all(outer, trained, None, None, warn=lambda m: None)):
        with pytest.raises(CheckpointError, match=f"it was trained with --data {phantoms}, this run has --data {outer}: "
                                                  "the same images passed at another folder level"):
            run()
        assert not (outer / "splits").exists()


def test_reopened_cache_takes_the_patient_pseudonyms_of_today(tmp_path):
    from gradfaith_tui.store.records import CaseInfo
    from gradfaith_tui.store.writer import CacheWriter

    images = np.zeros((2, 8, 8))
    old = [CaseInfo("a.dcm", 2, "dcm-0123456789ab", False), CaseInfo("b.png", 0, None, False)]
    CacheWriter(tmp_path, "f", "s", {}, old, images, images).close()
    new = [CaseInfo("a.dcm", 2, "dcm-keyedkeyed1", False), CaseInfo("b.png", 0, None, False)]
    CacheWriter(tmp_path, "f", "s", {}, new, images, images).close()
    con = sqlite3.connect(tmp_path / "audit.sqlite")
    assert [r[0] for r in con.execute("SELECT patient FROM cases ORDER BY idx")] == ["dcm-keyedkeyed1", None]
    con.close()


def test_empty_or_missing_cache_is_a_clear_error(tmp_path):
    from gradfaith_tui.store.writer import CacheWriter

    (tmp_path / "blocked" / "audit.sqlite").mkdir(parents=True)  # a folder where the database should be
    with pytest.raises(CacheError, match=r"blocked/audit.sqlite: cannot open the cache's database"):
        CacheWriter(tmp_path / "blocked", "f", "s", {}, [], np.zeros((0, 8, 8)), np.zeros((0, 8, 8)))
    with pytest.raises(CacheError, match="no audit cache"):
        CacheReader(tmp_path)
    (tmp_path / "audit.sqlite").write_bytes(b"")
    with pytest.raises(CacheError):
        CacheReader(tmp_path)


def test_every_default_metric_suspects_and_sanity_are_stored(cache):
    con = sqlite3.connect(cache / "audit.sqlite")
    names = {r[0] for r in con.execute("SELECT DISTINCT name FROM metrics")}
    assert names >= {"faith", "faith_logit", "locacc", "iou", "pointing_game", "relevance_mass", "relevance_rank",
                     "border_heat", "outside_body_heat", "outside_lung_heat", "lungs_only_flip", "body_only_flip", "consist"}
    stages = con.execute("SELECT model_id, stage, spearman FROM sanity ORDER BY model_id, stage").fetchall()
    assert {m for m, _, _ in stages} == {"resnet10t/seed0", "vit-tiny-p8/seed0"}  # reference seeds only
    assert all(-1 <= rho <= 1 for _, _, rho in stages)
    for idx, rule, value, reason in con.execute("SELECT idx, rule, value, reason FROM suspects"):
        assert rule in {"border", "off-body", "off-lung", "lung-context", "body-only"} and reason
    # The phantoms' planted marker is ground truth: measured on exactly the marked cases.
    marked = {i for (i,) in con.execute("SELECT idx FROM cases WHERE shortcut=1")}
    assert marked
    for name in ("shortcut_flip", "shortcut_drop", "shortcut_heat"):
        rows = con.execute("SELECT e.model_id, m.idx FROM metrics m JOIN explanations e USING (expl_id) "
                           "WHERE m.name=? AND m.value IS NOT NULL", (name,)).fetchall()
        assert {i for _, i in rows} == marked and len(rows) == 4 * len(marked)


def _copy_cache(cache, tmp_path):
    import shutil

    return Path(shutil.copytree(cache, tmp_path / "copy"))


def test_a_crash_mid_run_loses_at_most_the_batch_in_flight(phantoms, trained, tmp_path):
    out = tmp_path / "c"
    seen = []

    def crash_after_two_batches(model_id, done, total):
        seen.append(done)
        if len([d for d in seen if d > 0]) == 2:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) would, between two batches

    cam = CamSettings(batch_size=2, sanity_cases=0)
    with pytest.raises(KeyboardInterrupt):
        precompute(phantoms, trained, out, cam=cam, warn=lambda m: None, with_timing=False, progress=crash_after_two_batches)
    r = CacheReader(out)  # still readable
    done = r.con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0]
    assert done == 4, "two finished batches of two cases are kept"
    r.close()
    counts = []
    precompute(phantoms, trained, out, cam=cam, warn=lambda m: None, with_timing=False,
               progress=lambda m, d, t: counts.append((m, d, t)))
    assert counts[0] == ("resnet10t/seed0", 4, counts[0][2]), "the rerun starts after the finished cases"
    r = CacheReader(out)
    n = r.n_cases
    per_model = dict(r.con.execute("SELECT e.model_id, COUNT(*) FROM metrics m JOIN explanations e USING (expl_id) "
                                   "WHERE m.name='faith' GROUP BY 1").fetchall())
    assert set(per_model.values()) == {n} and len(per_model) == 4
    assert not np.isnan(r.heatmap(r.columns[0].expl_id, n - 1)).any()


def test_scores_that_overflow_stop_precompute_with_one_clear_error(phantoms, trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ck"
    shutil.copytree(trained / "resnet10t" / "seed0", ckpt / "resnet10t" / "seed0")
    weights = ckpt / "resnet10t" / "seed0" / "model.safetensors"
    state = load_file(str(weights))
    state["fc.weight"] = state["fc.weight"].sign() * 3e38  # finite weights, logits past float32's range
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="resnet10t/seed0: non-finite class scores on cpu for .* case"):
        precompute(phantoms, ckpt, tmp_path / "c", cam=CamSettings(batch_size=4, sanity_cases=0),
                   warn=lambda m: None, with_timing=False)


def test_killed_process_leaves_a_readable_cache_and_a_rerun_finishes(phantoms, trained, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "gradfaith_tui", "precompute", "--data", str(phantoms),
                             "--checkpoints", str(trained), "--cache", str(out), "--batch-size", "1", "--deep",
                             "--sanity-cases", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if (out / "audit.sqlite").exists():
            try:
                con = sqlite3.connect(f"file:{out / 'audit.sqlite'}?mode=ro", uri=True)
                done = con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0]
                con.close()
            except sqlite3.Error:
                done = 0
            if done >= 3:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up runs
    proc.wait()
    r = CacheReader(out)
    kept = r.con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0]
    assert kept >= 3
    r.close()
    precompute(phantoms, trained, out, cam=CamSettings(deep_steps=10, sanity_cases=0), warn=lambda m: None,
               with_timing=False)
    r = CacheReader(out)
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE name='deletion_auc'").fetchone()[0] == 4 * r.n_cases
    # Faith's control: the same maps shuffled, for every case; a number, not a copy of Faith
    control = r.con.execute("SELECT COUNT(*), SUM(ABS(s.value - f.value) > 1e-6) FROM metrics s JOIN metrics f "
                            "ON f.expl_id = s.expl_id AND f.idx = s.idx AND f.name = 'faith' "
                            "WHERE s.name = 'faith_shuffled'").fetchone()
    assert control[0] == 4 * r.n_cases and control[1] > 0
    # a case's control does not depend on the batch it came in (the killed run's, the rerun's, or another size)
    fresh = tmp_path / "fresh"
    precompute(phantoms, trained, fresh, names=["resnet10t"], seeds=[0],
               cam=CamSettings(deep_steps=10, sanity_cases=0, batch_size=5), warn=lambda m: None, with_timing=False)
    query = ("SELECT m.idx, m.value FROM metrics m JOIN explanations e ON e.expl_id = m.expl_id "
             "WHERE e.model_id = 'resnet10t/seed0' AND m.name = 'faith_shuffled' ORDER BY m.idx")
    want = r.con.execute(query).fetchall()
    got = sqlite3.connect(fresh / "audit.sqlite").execute(query).fetchall()
    assert [i for i, _ in got] == [i for i, _ in want] and np.allclose([v for _, v in got], [v for _, v in want], atol=1e-5)


def test_rollout_method_and_two_process_precompute(phantoms, trained, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "c"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "gradfaith_tui", "precompute", "--data", str(phantoms), "--checkpoints", str(trained),
                          "--cache", str(out), "--models", "vit-tiny-p8", "--method", "grad-rollout", "--batch-size", "2",
                          "--sanity-cases", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    r = CacheReader(out, method="grad-rollout")
    assert r.config["world_size"] == 2
    rows = r.rows(range(r.n_cases))
    assert all(row.results["vit-tiny-p8"].metrics.get("faith") is not None for row in rows)
    other = dict(r.con.execute("SELECT idx, pred FROM predictions WHERE model_id='vit-tiny-p8/seed1'").fetchall())
    assert all((row.results["vit-tiny-p8"].metrics.get("consist") is not None)
               == (other[row.idx] == row.results["vit-tiny-p8"].pred) for row in rows)
    assert r.con.execute("SELECT COUNT(*) FROM sanity WHERE method='grad-rollout'").fetchone()[0] >= 1


def test_a_reader_open_during_writes_sees_only_complete_rows(phantoms, trained, tmp_path):
    out = tmp_path / "c"
    snapshots = []

    def look(model_id, done, total):
        if done and (out / "audit.sqlite").exists():
            r = CacheReader(out)
            for row in r.rows(range(r.n_cases)):
                for col in r.columns:
                    if row.results[col.model.name].metrics.get("faith") is not None:
                        snapshots.append(r.heatmap(col.expl_id, row.idx) is not None)
            r.close()

    precompute(phantoms, trained, out, cam=CamSettings(batch_size=3, sanity_cases=0), warn=lambda m: None,
               with_timing=False, progress=look)
    assert snapshots and all(snapshots), "a row with metrics always has its map on disk"


def test_segmentation_spread_over_worker_processes_matches_one_process(phantoms, monkeypatch):
    from gradfaith_tui.data.dataset import discover
    from gradfaith_tui.data.prepared import load_split, prepare
    from gradfaith_tui.pipeline.job import Segmentations

    ds = discover(phantoms)
    arr = load_split(prepare(ds).samples(ds, "test"), 48)
    serial = Segmentations(workers=1).get(arr)
    monkeypatch.setattr(Segmentations, "PARALLEL_PIXELS", 1)  # a small set takes the worker path too
    parallel = Segmentations(workers=2).get(arr)
    assert serial[0].shape == parallel[0].shape == arr.images.shape
    assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])
    assert serial[1].any(axis=(1, 2)).mean() > 0.9, "lung fields found on nearly every phantom slice"


def test_report_scores_maps_and_suspect_rules_against_the_planted_shortcut(cache, tmp_path):
    import shutil

    from gradfaith_tui.report import markdown
    from gradfaith_tui.report.build import build
    from tests.test_report import md_table

    rows = md_table(markdown.render(build(CacheReader(cache))), "## Planted shortcut: ground truth")
    con = sqlite3.connect(cache / "audit.sqlite")
    marked = {i for (i,) in con.execute("SELECT idx FROM cases WHERE shortcut=1")}
    refs = [m for (m,) in con.execute("SELECT model_id FROM models WHERE is_ref=1")]
    assert sorted(r["Model"] for r in rows) == sorted(refs)
    for r in rows:
        expl = con.execute("SELECT expl_id FROM explanations WHERE model_id=?", (r["Model"],)).fetchone()[0]
        flips = [v for (v,) in con.execute("SELECT value FROM metrics WHERE expl_id=? AND name='shortcut_flip' AND value IS NOT NULL", (expl,))]
        assert r["Marked"] == str(len(marked)) == str(len(flips))
        assert r["Relied on it"].startswith(f"{int(sum(flips))} (")
        flagged = {i for (i,) in con.execute("SELECT DISTINCT idx FROM suspects WHERE model_id=?", (r["Model"],))}
        assert r["Flagged, unmarked"] == f"{len(flagged - marked)} of {CacheReader(cache).n_cases - len(marked)}"
    con.close()
    copy = Path(shutil.copytree(cache, tmp_path / "c"))  # real data: no marker, so no such section
    con = sqlite3.connect(copy / "audit.sqlite")
    con.execute("DELETE FROM metrics WHERE name LIKE 'shortcut%'")
    con.commit()
    con.close()
    assert "## Planted shortcut" not in markdown.render(build(CacheReader(copy)))


def test_phantom_report_has_masks_and_patients_and_says_the_data_are_synthetic(cache):
    from gradfaith_tui.report import markdown
    from gradfaith_tui.report.build import build

    reader = CacheReader(cache)
    assert reader.config["identical_files"] == {"groups": 0, "across_splits": 0, "label_conflicts": 0,
                                                "conflict_examples": []}  # precompute stores the data's copies
    marked = reader.con.execute("SELECT COUNT(*) FROM cases WHERE shortcut=1").fetchone()[0]
    report = build(reader)
    assert report.caveats == [f"The data are synthetic phantoms with a planted marker (on {marked} of {reader.n_cases} "
                              "test slices, all Malignant): the findings are about the method, not about lung CT."]
    text = markdown.render(report)
    assert "lesion mask" not in text.split("## Table I")[0] and "patient id" not in text
    assert text.count("not about lung CT") == 1


def test_explorer_shows_the_planted_marker_truth(cache, tmp_path):
    import asyncio
    import shutil

    from rich.console import Console

    from gradfaith_tui.tui.app import make_app
    from tests.test_tui_triage import settle

    copy = Path(shutil.copytree(cache, tmp_path / "c"))  # the explorer may write flags: keep the shared cache clean
    reader = CacheReader(copy)
    marked = [r.idx for r in reader.rows(range(reader.n_cases)) if r.shortcut]
    reader.close()

    async def main():
        app = make_app(copy)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.press("M")
            await settle(pilot)
            console = Console(width=160, record=True, color_system=None)
            console.print(app.screen.query_one("#models-body").content)
            text = console.export_text()
            assert "Planted shortcut (phantom ground truth)" in text
            line = next(ln for ln in text.splitlines() if ln.strip().startswith("M1 resnet10t") and " of " in ln)
            assert line.split()[2] == str(len(marked))
    asyncio.run(main())


def test_compiled_engine_fills_the_cache_with_the_same_numbers(cache, phantoms, trained, tmp_path, monkeypatch):
    """precompute --compile: the trunk through torch.compile (traced here with aot_eager, no code generation)."""
    from gradfaith_tui.cam import compiled

    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    ran = []
    release = compiled.CompiledForward.release
    monkeypatch.setattr(compiled.CompiledForward, "release",
                        lambda self: ran.append((self.compiled_once, self.broken)) or release(self))
    out = tmp_path / "compiled"
    precompute(phantoms, trained, out, names=["resnet10t"], seeds=[0], warn=lambda m: None, with_timing=False,
               cam=CamSettings(sanity_cases=0, compile=True))
    assert ran == [(True, None)]  # one model, compiled, no fallback
    assert_same_metrics(out, cache, "resnet10t/seed0")


def test_compile_that_cannot_apply_says_so_once_per_model_and_the_run_completes(phantoms, trained, tmp_path, monkeypatch):
    from gradfaith_tui.cam import compiled

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled, "BACKEND", no_compiler)
    said = []
    out = precompute(phantoms, trained, tmp_path / "c", names=["resnet10t", "vit-tiny-p8"], seeds=[0], warn=said.append,
                     with_timing=False, cam=CamSettings(sanity_cases=0, compile=True))
    notes = [m for m in said if "--compile" in m]
    assert len(notes) == 2, said
    for name in ("resnet10t", "vit-tiny-p8"):  # a ViT's blocks before the layer's block are its trunk
        assert f"{name}/seed0: --compile: the plain trunk ran, compiling failed (RuntimeError: no C++ compiler found)" in notes
    r = CacheReader(out)
    assert len(r.rows(range(r.n_cases))) == r.n_cases
    r.close()


def test_the_gpu_pipeline_on_the_cpu_stores_the_same_numbers_and_a_crash_keeps_written_batches(
        cache, phantoms, trained, tmp_path, monkeypatch):
    """As on CUDA: each batch queued before the one before it is written, trunks replayed from (stand-in)
    graphs, three edits in one wide pass. The numbers equal the plain run's; a crash loses at most the two
    batches in flight."""
    import gradfaith_tui.pipeline as pipeline
    from gradfaith_tui.cam import graphs
    from gradfaith_tui.models import precision

    recorded, replayed = [], []

    def record(self, x):
        recorded.append(len(x))
        return lambda inp: replayed.append(len(inp)) or self.fn(inp)

    monkeypatch.setattr(pipeline.job, "AHEAD_DEVICES", ("cpu", "cuda"))
    monkeypatch.setattr(precision, "GRAPH_DEVICES", ("cpu",))
    monkeypatch.setattr(graphs.GraphedForward, "_record", record)
    out = tmp_path / "ahead"
    cam = CamSettings(batch_size=4, sanity_cases=0)
    precompute(phantoms, trained, out, names=["resnet10t"], seeds=[0], cam=cam, warn=lambda m: None,
               with_timing=False)
    assert recorded == [4, 12] and set(replayed) == {4, 12}  # the batch, and its three edits in one pass
    assert_same_metrics(out, cache, "resnet10t/seed0")
    pred = "SELECT idx, pred, p0, p1, p2 FROM predictions WHERE model_id = 'resnet10t/seed0' ORDER BY idx"
    got, want = (np.array(sqlite3.connect(c / "audit.sqlite").execute(pred).fetchall()) for c in (out, cache))
    assert np.array_equal(got[:, :2], want[:, :2])  # approx() compares rows (tuples) exactly: arrays, to fp32 rounding
    np.testing.assert_allclose(got[:, 2:], want[:, 2:], rtol=1e-5, atol=1e-6)

    seen = []

    def crash_after_two_batches(model_id, done, total):
        seen.append(done)
        if len([d for d in seen if d > 0]) == 2:
            raise KeyboardInterrupt

    crashed = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        precompute(phantoms, trained, crashed, names=["resnet10t"], seeds=[0], cam=CamSettings(batch_size=2, sanity_cases=0),
                   warn=lambda m: None, with_timing=False, progress=crash_after_two_batches)
    r = CacheReader(crashed)
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0] == 4  # two batches written
    r.close()


def test_out_of_memory_names_the_batch_size_and_keeps_the_finished_batches(phantoms, trained, tmp_path, monkeypatch):
    import torch

    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.metrics import per_case

    real, calls = per_case.device_metrics, []

    def second_batch_too_big(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(per_case, "device_metrics", second_batch_too_big)
    out = tmp_path / "c"
    with pytest.raises(GradfaithError, match=r"--batch-size 2: resnet10t/seed0 ran out of memory on cpu .*smaller"):
        precompute(phantoms, trained, out, names=["resnet10t"], seeds=[0], cam=CamSettings(batch_size=2, sanity_cases=0),
                   warn=lambda m: None, with_timing=False)
    r = CacheReader(out)
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0] == 2
    r.close()


def test_a_cache_copied_without_its_arrays_is_refused_naming_the_first_missing(cache, tmp_path):
    import shutil

    copy = tmp_path / "copied"
    shutil.copytree(cache, copy)
    first = sorted((copy / "maps").iterdir())[0]
    first.unlink()
    with pytest.raises(CacheError, match=rf"{first.name}: missing from the cache \(1 of its \d+ array files\); rerun "
                                         r"`gradfaith-tui precompute` on this cache to compute them again, or copy"):
        CacheReader(copy)
    (copy / "images.npy").unlink()
    with pytest.raises(CacheError, match=r"images.npy: missing from the cache \(2 of"):
        CacheReader(copy)


def test_a_cache_of_another_method_shows_that_method_and_refuses_one_it_lacks(cache, phantoms, trained, tmp_path):
    out = tmp_path / "plus"
    precompute(phantoms, trained, out, names=["resnet10t"], seeds=[0], warn=lambda m: None, with_timing=False,
               cam=CamSettings(method="gradcam++", sanity_cases=0))
    r = CacheReader(out)
    assert (r.method, r.methods) == ("gradcam++", ["gradcam++"])
    col = r.columns[0]
    assert col.expl_id is not None and r.heatmap(col.expl_id, 0) is not None
    r.close()
    from gradfaith_tui.report.build import title

    assert (title("gradcam"), title("gradcam++")) == ("Grad-CAM faithfulness audit", "Heatmap faithfulness audit: gradcam++")
    with pytest.raises(CacheError, match=r"--method: no gradcam maps in .* \(it holds gradcam\+\+\)"):
        CacheReader(out, "gradcam")
    r = CacheReader(cache)  # Grad-CAM, where a cache has it
    assert r.method == "gradcam"
    r.close()


def _synthetic_copy(tmp_path, name: str, n: int = 20) -> Path:
    from gradfaith_tui.store.synthetic import build_synthetic_cache

    return build_synthetic_cache(tmp_path / name, n)


def test_damaged_arrays_are_refused_naming_the_file_from_their_headers(tmp_path):
    import os

    damage = {
        "maps/1.npy": lambda p: os.truncate(p, 100),  # `truncate -s 100`
        "images.npy": lambda p: os.truncate(p, 1000),
        "masks.npy": lambda p: os.truncate(p, 1000),
        "maps/2.npy": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),  # random bytes: "pickled data"
        "maps/3.npy": lambda p: np.save(p, np.zeros((20, 3, 3), np.float16)),  # another grid than recorded
    }
    for k, (name, spoil) in enumerate(damage.items()):
        root = _synthetic_copy(tmp_path, f"c{k}")
        if name.startswith("maps/"):  # the n-th explanation's map file, whatever the writer named it
            con = sqlite3.connect(root / "audit.sqlite")
            name = con.execute("SELECT map_file FROM explanations ORDER BY expl_id LIMIT 1 OFFSET ?",
                               (int(name[5:-4]) - 1,)).fetchone()[0]
            con.close()
        spoil(root / name)
        with pytest.raises(CacheError, match=rf"{name}: damaged \(.+\); rerun `gradfaith-tui precompute`") as err:
            CacheReader(root)
        assert "\n" not in str(err.value)


def test_a_database_that_is_not_an_audit_cache_is_one_line(tmp_path):
    from gradfaith_tui.store.writer import CacheWriter

    def open_writer(root):
        return CacheWriter(root, "synthetic-0-20", "synthetic-split-0", {}, [], np.zeros((20, 64, 64)), np.zeros((20, 64, 64)))

    garbage = _synthetic_copy(tmp_path, "garbage")
    (garbage / "audit.sqlite").write_bytes(np.random.default_rng(1).bytes(20000))
    truncated = _synthetic_copy(tmp_path, "truncated")
    with (truncated / "audit.sqlite").open("r+b") as f:
        f.truncate(30000)
    no_meta = _synthetic_copy(tmp_path, "no-meta")
    con = sqlite3.connect(no_meta / "audit.sqlite")
    con.execute("DELETE FROM meta")
    con.commit()
    con.close()
    for root in (garbage, truncated, no_meta):
        with pytest.raises(CacheError, match=rf"{root.name}/audit.sqlite: not an audit cache, or damaged .*new --cache"):
            open_writer(root)
    for root in (garbage, truncated):
        with pytest.raises(CacheError, match=rf"{root.name}/audit.sqlite: not an audit cache, or damaged"):
            CacheReader(root)
    con = sqlite3.connect(no_meta / "audit.sqlite")
    assert con.execute("SELECT COUNT(*) FROM cases").fetchone()[0] == 20  # nothing written into it
    con.close()


def test_precompute_repairs_damaged_or_missing_arrays_and_keeps_the_flags(cache, phantoms, trained, tmp_path):
    import shutil

    from gradfaith_tui.store.flags import FlagStore

    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    store = FlagStore(copy)
    store.flag(3, "shortcut")
    store.note(3, "heat on the marker")
    store.close()
    con = sqlite3.connect(copy / "audit.sqlite")
    expl_id, map_file, model_id = con.execute(
        "SELECT expl_id, map_file, model_id FROM explanations ORDER BY expl_id LIMIT 1").fetchone()
    n = con.execute("SELECT COUNT(*) FROM cases").fetchone()[0]
    con.close()
    images = np.load(copy / "images.npy")
    (copy / map_file).write_bytes(np.random.default_rng(2).bytes(3000))
    (copy / "images.npy").unlink()
    with (copy / "masks.npy").open("r+b") as f:
        f.truncate(200)
    warnings = []
    precompute(phantoms, trained, copy, warn=warnings.append, with_timing=False)
    said = "\n".join(warnings)
    assert f"{copy / 'images.npy'}: missing; written again" in said
    assert f"{copy / 'masks.npy'}: unreadable" in said
    assert f"{copy / map_file}: unreadable" in said and "computed again" in said
    r = CacheReader(copy)  # no damaged file left
    assert np.array_equal(np.load(copy / "images.npy"), images)
    new = r.con.execute("SELECT expl_id FROM explanations WHERE model_id=? AND method='gradcam'", (model_id,)).fetchone()[0]
    assert new != expl_id
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id=? AND name='faith'", (new,)).fetchone()[0] == n
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id=?", (expl_id,)).fetchone()[0] == 0
    assert r.heatmap(new, 0) is not None
    assert r.completeness() == (n * len(r.columns), n * len(r.columns))
    r.close()
    store = FlagStore(copy)
    assert (store.get(3).category, store.get(3).note) == ("shortcut", "heat on the marker")
    store.close()


@pytest.mark.parametrize("engine", ["fast", "library"])
def test_a_target_layer_without_a_spatial_map_is_one_line(phantoms, trained, tmp_path, engine):
    from gradfaith_tui.errors import GradfaithError

    for model, layer in (("resnet10t", "fc"), ("resnet10t", "global_pool"), ("vit-tiny-p8", "head")):
        with pytest.raises(GradfaithError, match=rf"^--target-layer: '{layer}' gives a \(1, \d+\) output, not a spatial "
                                                  rf"map; pick a convolutional layer such as \S+$"):
            precompute(phantoms, trained, tmp_path / f"c-{model}-{layer}", names=[model], seeds=[0], target_layer=layer,
                       cam=CamSettings(engine=engine, method="gradcam", sanity_cases=0), warn=lambda m: None,
                       with_timing=False)
    assert not any(tmp_path.iterdir())  # refused before the cache was made: no folder, arrays or lock left behind


def test_rollout_of_a_cnn_is_refused_before_the_cache_is_made(phantoms, trained, tmp_path):
    from gradfaith_tui.errors import GradfaithError

    for method in ("grad-rollout", "rollout"):
        with pytest.raises(GradfaithError, match=rf"^--method {method}: only for ViT-style models .*; resnet10t/seed0 "
                                                  r"is not one"):
            precompute(phantoms, trained, tmp_path / method, names=["resnet10t"], seeds=[0],
                       cam=CamSettings(method=method, sanity_cases=0), warn=lambda m: None, with_timing=False)
    assert not any(tmp_path.iterdir())  # a cache with the model registered and no maps was left, and reported on


def test_evaluation_files_merge_models_and_a_cache_of_other_data_is_refused(phantoms, trained, cache, tmp_path,
                                                                             monkeypatch):
    import json
    import shutil

    from typer.testing import CliRunner

    import gradfaith_tui.models.evaluate_all as evaluate_all
    from gradfaith_tui.cli import app
    from gradfaith_tui.data.phantom import PhantomConfig, write_dataset
    from gradfaith_tui.store.exports import write_evaluation_files

    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    before = json.loads((copy / "evaluation.json").read_text())
    assert len(before) == 4
    # evaluating one model replaces its entry and keeps the other models'
    one = {"resnet10t/seed0": {**before["resnet10t/seed0"], "n": -1}}
    write_evaluation_files(copy, one)
    after = json.loads((copy / "evaluation.json").read_text())
    assert set(after) == set(before) and after["resnet10t/seed0"]["n"] == -1
    assert sum(1 for line in (copy / "table1.csv").read_text().splitlines() if ",macro," in line) == 4
    assert len((copy / "confusion.csv").read_text().splitlines()) == 1 + 4 * 3

    def must_not_run(*a, **k):
        raise AssertionError("evaluate must check --cache before evaluating")

    monkeypatch.setattr(evaluate_all, "evaluate", must_not_run)  # no model is run before the check
    other = tmp_path / "other"
    write_dataset(PhantomConfig(n_patients=9, slices_per_patient=2, size=48, balance=(1, 1, 1), seed=11), other)
    a_file = tmp_path / "afile"
    a_file.write_text("")
    for data, where, message in ((other, copy, f"{copy}: cache was built from other data (fingerprint "),
                                 (phantoms, a_file, f"--cache: {a_file} is a file, not a folder")):
        # --force: past the checkpoints' own check (trained on other data), which comes first
        res = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--checkpoints", str(trained),
                                       "--cache", str(where), "--force"])
        assert res.exit_code != 0 and isinstance(res.exception, CacheError), res.output
        assert str(res.exception).startswith(message) and "\n" not in str(res.exception)
    assert json.loads((copy / "evaluation.json").read_text()) == after  # untouched


def test_a_map_file_named_outside_the_cache_is_refused_and_never_deleted(tmp_path):
    from gradfaith_tui.store.writer import CacheWriter

    root = _synthetic_copy(tmp_path, "crafted")
    victim = tmp_path / "victim.txt"
    victim.write_text("a user's file")
    con = sqlite3.connect(root / "audit.sqlite")
    con.execute("UPDATE explanations SET map_file=? WHERE expl_id=(SELECT MIN(expl_id) FROM explanations)", (str(victim),))
    con.commit()
    con.close()
    with pytest.raises(CacheError, match="names a map file outside its maps folder"):
        CacheReader(root)
    with pytest.raises(CacheError, match="outside its maps folder"):  # precompute's repair would have deleted it
        CacheWriter(root, "synthetic-0-20", "synthetic-split-0", {}, [], np.zeros((20, 64, 64)), np.zeros((20, 64, 64)))
    assert victim.read_text() == "a user's file"


def test_a_replaced_explanation_gets_a_new_map_file_even_where_its_id_comes_back(tmp_path):
    from gradfaith_tui.store.records import CaseInfo
    from gradfaith_tui.store.writer import CacheWriter

    images = np.zeros((2, 8, 8))
    cases = [CaseInfo("a.png", 0, None, False), CaseInfo("b.png", 1, None, False)]
    writer = CacheWriter(tmp_path, "f", "s", {}, cases, images, images)
    first = writer.explanation("m/seed0", "gradcam", "layer4", "a" * 16, (2, 2), {})
    old = writer.con.execute("SELECT map_file FROM explanations").fetchone()[0]
    kept = np.load(tmp_path / old, mmap_mode="r")  # an explorer reading it
    second = writer.explanation("m/seed0", "gradcam", "layer4", "b" * 16, (2, 2), {"tau": 0.4})
    new = writer.con.execute("SELECT map_file FROM explanations").fetchone()[0]
    writer.close()
    assert second == first and new != old  # SQLite handed the id out again; the file is another
    assert kept.shape == (2, 2, 2) and not (tmp_path / old).exists()


def test_a_database_of_someone_elses_is_refused_and_left_as_it_was(tmp_path):
    from gradfaith_tui.store.writer import CacheWriter

    con = sqlite3.connect(tmp_path / "audit.sqlite")
    con.execute("CREATE TABLE foo (x)")
    con.execute("INSERT INTO foo VALUES (1)")
    con.commit()
    con.close()
    with pytest.raises(CacheError, match=r"audit.sqlite: not an audit cache.*holds other tables \(foo\)"):
        CacheWriter(tmp_path, "f", "s", {}, [], np.zeros((0, 8, 8)), np.zeros((0, 8, 8)))
    con = sqlite3.connect(tmp_path / "audit.sqlite")
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["foo"]
    con.close()


def test_a_second_writer_of_a_cache_or_checkpoint_is_refused_and_a_dead_ones_lock_is_gone(tmp_path):
    import subprocess
    import sys

    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.locks import writer_lock

    images = np.zeros((2, 8, 8), np.uint8)
    cases = [CaseInfo(f"c{i}", 0, None, False, None) for i in range(2)]
    first = CacheWriter(tmp_path / "c", "f", "s", {}, cases, images, images)
    with pytest.raises(GradfaithError, match=r"c: another precompute is writing there \(pid \d+\); wait for it"):
        CacheWriter(tmp_path / "c", "f", "s", {}, cases, images, images)
    CacheWriter(tmp_path / "c", "f", "s", {}, cases, images, images, lock=False).close()  # torchrun's other ranks
    first.close()
    CacheWriter(tmp_path / "c", "f", "s", {}, cases, images, images).close()  # released on close
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom gradfaith_tui.locks import writer_lock\n"
                               f"with writer_lock({str(tmp_path / 'ck')!r}, 'train'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(GradfaithError, match=f"another train is writing there \\(pid {holder.pid}\\)"):
        with writer_lock(tmp_path / "ck", "train"):
            pass
    holder.kill()  # a killed run leaves no lock behind: the kernel drops it with the process
    holder.wait()
    with writer_lock(tmp_path / "ck", "train"):
        pass


def test_a_cache_stopped_before_its_first_rows_says_so(tmp_path):
    import sqlite3

    from gradfaith_tui.errors import CacheError
    from gradfaith_tui.store.schema import DDL

    (tmp_path / "c").mkdir()
    con = sqlite3.connect(tmp_path / "c" / "audit.sqlite")
    con.executescript(DDL)  # the tables, and nothing in them: killed while writing the arrays
    con.close()
    with pytest.raises(CacheError, match="an unfinished cache .*rerun `gradfaith-tui precompute`"):
        CacheReader(tmp_path / "c")


def test_a_row_is_read_from_one_snapshot_while_precompute_commits(tmp_path):
    import sqlite3

    from gradfaith_tui.store.synthetic import build_synthetic_cache

    cache = build_synthetic_cache(tmp_path / "c", 12)
    r = CacheReader(cache)
    before = r.rows([3])[0]
    real, writer = r.con, sqlite3.connect(cache / "audit.sqlite")

    class CommitsMidRead:  # a batch lands between the reader's predictions and metrics queries
        in_transaction = property(lambda self: real.in_transaction)

        def execute(self, sql, *args):
            cur = real.execute(sql, *args)
            if sql.startswith("SELECT model_id, idx, pred"):
                cur = list(cur)
                writer.execute("DELETE FROM predictions WHERE idx=3")
                writer.execute("UPDATE metrics SET value = value + 5 WHERE idx=3")
                writer.commit()
            return cur

    r.con = CommitsMidRead()
    after = r.rows([3])[0]
    r.con = real
    for name, res in before.results.items():  # the snapshot of before the commit, whole
        assert after.results[name].pred == res.pred and after.results[name].metrics == res.metrics
    fresh = r.rows([3])[0]
    assert all(v.pred is None for v in fresh.results.values())  # the next read sees the commit, all of it
    assert all(m > 4 for v in fresh.results.values() for m in v.metrics.values() if m is not None)
    writer.close()
    r.close()


def test_the_sanity_check_explains_the_class_the_stored_maps_explain(phantoms, trained, tmp_path, monkeypatch):
    from gradfaith_tui.metrics import sanity

    seen, real = [], sanity.cascading_randomisation

    def record(model, x, targets, explain, **kw):
        seen.append(targets.tolist())
        return real(model, x, targets, explain, **kw)

    monkeypatch.setattr(sanity, "cascading_randomisation", record)
    out = precompute(phantoms, trained, tmp_path / "c", names=["resnet10t"], seeds=[0], target="true",
                     cam=CamSettings(sanity_cases=3), warn=lambda m: None, with_timing=False)
    r = CacheReader(out)
    all_labels = np.array([row.label for row in r.rows(range(r.n_cases))])
    r.close()
    from gradfaith_tui.pipeline.job import spread_over_classes

    rows = spread_over_classes(all_labels, 3)
    assert sorted(all_labels[rows].tolist()) == [0, 1, 2]  # one of each class, not the first three (one class)
    assert seen == [all_labels[rows].tolist()]  # the true classes, as --target true asks, not the predictions


def test_compile_names_why_it_cannot_apply_to_an_engine_without_a_split_trunk():
    from gradfaith_tui.pipeline.job import _not_compiled

    assert _not_compiled(object()).startswith("--compile: not compiled (only the fast Grad-CAM engine's trunk is")


def test_the_library_engine_recomputes_what_the_fast_engine_stored(cache, phantoms, trained, tmp_path):
    """--engine picks Grad-CAM's implementation, so it is part of a result's key: a cache made with the fused
    engine is not shown as the library's maps."""
    import json
    import shutil

    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    calls = []
    precompute(phantoms, trained, copy, names=["resnet10t"], seeds=[0], warn=lambda m: None, with_timing=False,
               cam=CamSettings(engine="library", sanity_cases=0), progress=lambda *a: calls.append(a))
    assert calls[0][1] == 0, "every case is computed again"
    con = sqlite3.connect(copy / "audit.sqlite")
    settings = con.execute("SELECT settings FROM explanations WHERE model_id='resnet10t/seed0' AND method='gradcam'").fetchone()[0]
    assert json.loads(settings)["engine"] == "library"
    con.close()


def test_consist_of_an_older_rule_makes_the_cache_not_current_and_precompute_redoes_it(cache, phantoms, trained, tmp_path):
    import shutil

    from gradfaith_tui.freshness import cache_is_current
    from gradfaith_tui.store.keys import CONSIST_RULE

    copy = Path(shutil.copytree(cache, tmp_path / "old"))
    args = (phantoms, trained, copy, TINY_MODELS, [0, 1], 1, CamSettings())
    assert cache_is_current(*args)
    con = sqlite3.connect(copy / "audit.sqlite")
    con.execute("UPDATE explanations SET settings = json_remove(settings, '$.consist_rule')")
    con.execute("UPDATE metrics SET value = 0.987 WHERE name = 'consist'")  # as an older rule left them
    con.commit()
    assert not cache_is_current(*args)
    precompute(phantoms, trained, copy, names=[TINY_MODELS[0]], seeds=[0], warn=lambda m: None, with_timing=False)
    rules = lambda: {r[0]: r[1] for r in con.execute(  # noqa: E731
        "SELECT model_id, json_extract(settings, '$.consist_rule') FROM explanations")}
    assert set(rules().values()) == {None}  # one seed of one model: no Consist recomputed, no rule claimed
    assert not cache_is_current(*args)
    precompute(phantoms, trained, copy, warn=lambda m: None, with_timing=False)
    assert cache_is_current(*args) and set(rules().values()) == {CONSIST_RULE}
    want = dict(sqlite3.connect(cache / "audit.sqlite").execute(
        "SELECT m.expl_id || '/' || m.idx, m.value FROM metrics m WHERE name='consist'").fetchall())
    got = dict(con.execute("SELECT m.expl_id || '/' || m.idx, m.value FROM metrics m WHERE name='consist'").fetchall())
    assert got == want and 0.987 not in got.values()  # recomputed, the same as a fresh precompute's
    con.close()


def test_masks_redrawn_after_the_cache_was_built_get_their_metrics_recomputed_from_the_stored_maps(
        cache, phantoms, trained, tmp_path):
    """Masks are not part of the data's fingerprint (a radiologist may draw them after training): a rerun must
    not keep LocAcc and the rest from the old masks as current, nor recompute any map to fix them."""
    import csv
    import shutil

    from PIL import Image

    data = Path(shutil.copytree(phantoms, tmp_path / "data"))
    copy = _copy_cache(cache, tmp_path)
    con = sqlite3.connect(copy / "audit.sqlite")
    (cleared, cid1), (moved, cid2) = con.execute("SELECT idx, case_id FROM cases WHERE has_mask=1 ORDER BY idx LIMIT 2")
    expl = dict(con.execute("SELECT expl_id, map_file FROM explanations"))
    con.close()
    mask_of = {r["path"]: r["mask"] for r in csv.DictReader((data / "manifest.csv").open())}
    blank = np.zeros_like(np.array(Image.open(data / mask_of[cid1])))
    Image.fromarray(blank).save(data / mask_of[cid1])  # all black: no mask
    corner = blank.copy()
    corner[2:14, 2:14] = 255  # the lesion redrawn in a corner
    Image.fromarray(corner).save(data / mask_of[cid2])
    maps_before = {f: (copy / f).read_bytes() for f in expl.values()}

    warnings = []
    precompute(data, trained, copy, warn=warnings.append, with_timing=False)
    assert any("lesion masks changed for 2 test case(s)" in w and f"({len(expl)} explanation(s))" in w
               for w in warnings), warnings
    r = CacheReader(copy)
    assert dict(r.con.execute("SELECT expl_id, map_file FROM explanations")) == expl  # no map recomputed
    assert {f: (copy / f).read_bytes() for f in expl.values()} == maps_before
    assert [r.con.execute("SELECT has_mask FROM cases WHERE idx=?", (i,)).fetchone()[0] for i in (cleared, moved)] == [0, 1]
    assert r.con.execute("SELECT COUNT(*) FROM metrics WHERE idx=? AND name='locacc' AND value IS NOT NULL",
                         (cleared,)).fetchone()[0] == 0
    assert not np.load(copy / "masks.npy")[cleared].any() and np.load(copy / "masks.npy")[moved][:2].sum() > 0
    r.close()
    fresh = tmp_path / "fresh"  # what a cache built from scratch on the new masks holds
    precompute(data, trained, fresh, warn=lambda m: None, with_timing=False)
    for model_id in ("resnet10t/seed0", "vit-tiny-p8/seed1"):  # recomputed from float16 maps: to 1e-3
        assert_same_metrics(copy, fresh, model_id, tol=1e-3)
    again = []
    precompute(data, trained, copy, warn=again.append, with_timing=False)
    assert not any("lesion masks" in w for w in again)


def test_a_full_disk_while_the_cache_makes_a_file_names_that_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    import errno

    from gradfaith_tui.store.writer import CacheWriter

    images = np.zeros((2, 8, 8))
    cases = [CaseInfo("a.png", 0, None, False), CaseInfo("b.png", 1, None, False)]
    writer = CacheWriter(tmp_path, "f", "s", {}, cases, images, images)
    import gradfaith_tui.store.writer as cache_module

    real = cache_module._nan_maps

    def full(path, *a, **k):  # as a write on a full disk: an error part-way, not a SIGBUS through a memory map
        Path(path).write_bytes(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "_nan_maps", full)
    with pytest.raises(OSError) as caught:
        writer.explanation("m/seed0", "gradcam", "layer4", "a" * 16, (2, 2), {})
    name = Path(caught.value.filename)
    assert name.parent == tmp_path / "maps" and name.suffix == ".npy" and "tmp" not in name.name
    assert "what precompute stored is kept" in caught.value.strerror
    assert list((tmp_path / "maps").iterdir()) == []  # the partial file is gone, not left holding the space
    assert writer.con.execute("SELECT COUNT(*) FROM explanations").fetchone()[0] == 0  # its row rolled back
    monkeypatch.setattr(cache_module, "_nan_maps", real)
    assert writer.explanation("m/seed0", "gradcam", "layer4", "a" * 16, (2, 2), {}) >= 1  # space again: it goes on
    def numpy_on_a_full_disk(f, arr):  # NumPy's own words for it, without an errno
        f.write(b"partial")
        raise OSError("245760 requested and 122752 written")

    monkeypatch.setattr(np, "save", numpy_on_a_full_disk)
    with pytest.raises(OSError) as caught:
        writer._save("masks.npy", np.zeros((2, 8, 8)))
    assert caught.value.filename == str(tmp_path / "masks.npy") and "no space left" in caught.value.strerror
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
    assert np.load(tmp_path / "masks.npy").shape == (2, 8, 8)  # the old one, whole
    writer.close()


def test_models_refused_as_trained_on_other_data_say_what_changed_since_the_split(phantoms, trained, tmp_path):
    """A file removed after training (an unreadable one the user cleaned up, say) is named, not just two hashes."""
    import csv
    import shutil

    data = Path(shutil.copytree(phantoms, tmp_path / "data"))
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    gone = rows.pop(5)
    with (data / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(CheckpointError, match=rf"since its split .*split-seed0.csv was saved: 1 removed "
                                              rf"\(e.g. {re.escape(gone['path'])}\); retrain, or pass --force") as err:
        precompute(data, trained, tmp_path / "c", warn=lambda m: None)
    assert "another folder level" not in str(err.value)  # what changed is known: no guess about --data
    rows.append(gone)
    with (data / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    from PIL import Image

    img = Image.open(data / gone["path"]).convert("L")
    img.putpixel((0, 0), 255 - img.getpixel((0, 0)))  # the same names, one slice changed
    img.save(data / gone["path"])
    with pytest.raises(CheckpointError, match="the files are those its saved split .* lists, so a file.s content or "
                                              "the DICOM --window differs"):
        precompute(data, trained, tmp_path / "c", warn=lambda m: None)


def test_a_run_of_a_later_seed_alone_keeps_one_reference_per_name(cache, phantoms, trained, tmp_path):
    """precompute --seeds 1 on a cache holding seed 0 once made seed 1 a second reference: the model showed
    twice, and rows keyed by name gave one column the other seed's predictions."""
    copy = _copy_cache(cache, tmp_path)
    precompute(phantoms, trained, copy, seeds=[1], warn=lambda m: None, with_timing=False)
    r = CacheReader(copy)
    assert [c.model.model_id for c in r.columns] == [f"{n}/seed0" for n in TINY_MODELS]
    assert [row[0] for row in r.con.execute("SELECT model_id FROM models WHERE is_ref=1 ORDER BY model_id")] == [
        f"{n}/seed0" for n in TINY_MODELS]
    r.close()
    con = sqlite3.connect(copy / "audit.sqlite")  # a cache written by the earlier version: two marked
    con.execute("UPDATE models SET is_ref=1")
    con.commit()
    con.close()
    r = CacheReader(copy)
    assert [c.model.model_id for c in r.columns] == [f"{n}/seed0" for n in TINY_MODELS]
    assert r.completeness()[1] == r.n_cases * len(TINY_MODELS)
    r.close()


def test_a_later_seed_explained_alone_with_another_method_is_that_methods_column(cache, phantoms, trained, tmp_path):
    copy = _copy_cache(cache, tmp_path)
    precompute(phantoms, trained, copy, names=["resnet10t"], seeds=[1], cam=CamSettings(method="gradcam++",
               sanity_cases=0), warn=lambda m: None, with_timing=False)
    r = CacheReader(copy, "gradcam++")
    assert [(c.model.model_id, c.expl_id is not None) for c in r.columns] == [
        ("resnet10t/seed1", True), ("vit-tiny-p8/seed0", False)]  # the ViT has no gradcam++ maps: an empty column
    r.close()
    r = CacheReader(copy)  # Grad-CAM: seed 0 stays its reference
    assert [c.model.model_id for c in r.columns] == [f"{n}/seed0" for n in TINY_MODELS]
    r.close()


def _with_box(data: Path, case_id: str, box: tuple[int, int, int, int]) -> None:
    """The manifest with lesion-box columns, one box on case_id."""
    import csv

    rows = list(csv.DictReader((data / "manifest.csv").open()))
    for r in rows:
        r.update(dict.fromkeys(("x0", "y0", "x1", "y1"), ""))
        if r["path"] == case_id:
            r.update(zip(("x0", "y0", "x1", "y1"), map(str, box)))
    with (data / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_lesion_boxes_drawn_or_moved_in_the_csv_keep_the_checkpoints_and_the_cache(cache, phantoms, trained, tmp_path):
    """A CSV's lesion boxes were part of the data's fingerprint: drawing or moving one made every checkpoint
    "trained on other data" and the cache "built from other data". Like mask files, they change nothing a
    model sees: the metrics that read them are recomputed from the stored maps."""
    import shutil

    from gradfaith_tui.models.evaluate_all import evaluate_all

    data = Path(shutil.copytree(phantoms, tmp_path / "data"))
    copy = _copy_cache(cache, tmp_path)
    con = sqlite3.connect(copy / "audit.sqlite")
    idx, case_id = con.execute("SELECT idx, case_id FROM cases WHERE has_mask=0 ORDER BY idx LIMIT 1").fetchone()
    expl = dict(con.execute("SELECT expl_id, map_file FROM explanations"))
    con.close()
    from gradfaith_tui.freshness import cache_is_current

    locacc = []
    for box in ((2, 2, 20, 20), (34, 34, 60, 60)):  # drawn, then moved
        _with_box(data, case_id, box)
        # `demo` must not call the cache current while its masks are the old ones
        assert not cache_is_current(data, trained, copy, TINY_MODELS, [0, 1], 1, CamSettings())
        warnings = []
        precompute(data, trained, copy, warn=warnings.append, with_timing=False)
        assert any("lesion masks changed for 1 test case(s)" in w for w in warnings), warnings
        r = CacheReader(copy)
        assert dict(r.con.execute("SELECT expl_id, map_file FROM explanations")) == expl  # no map recomputed
        assert r.con.execute("SELECT has_mask FROM cases WHERE idx=?", (idx,)).fetchone()[0] == 1
        locacc.append(r.con.execute("SELECT value FROM metrics WHERE idx=? AND name='locacc' ORDER BY expl_id",
                                    (idx,)).fetchall())
        r.close()
        assert cache_is_current(data, trained, copy, TINY_MODELS, [0, 1], 1, CamSettings())
    assert locacc[0] != locacc[1] and all(v is not None for (v,) in locacc[1])
    assert set(evaluate_all(data, trained, TINY_MODELS, [0], "cpu", warn=lambda m: None)) == {
        f"{n}/seed0" for n in TINY_MODELS}  # no "trained on other data"


def test_checkpoints_and_caches_fingerprinted_with_lesion_boxes_by_earlier_versions_still_match(
        phantoms, trained, tmp_path):
    import json
    import shutil

    from gradfaith_tui.data.dataset import discover
    from gradfaith_tui.data.prepared import prepare
    from gradfaith_tui.models.factory import load_checkpoint
    from gradfaith_tui.models.resume import is_complete

    data = Path(shutil.copytree(phantoms, tmp_path / "data"))
    case_id = discover(data).samples[0].case_id
    _with_box(data, case_id, (2, 2, 20, 20))
    prep = prepare(discover(data))
    new, legacy = prep.fingerprints
    assert new == discover(phantoms).fingerprint() and legacy != new

    ckpt = Path(shutil.copytree(trained / "resnet10t" / "seed0", tmp_path / "ckpt"))
    card = json.loads((ckpt / "card.json").read_text())
    (ckpt / "card.json").write_text(json.dumps({**card, "data_fingerprint": legacy}))
    load_checkpoint(ckpt, prep.fingerprints)
    assert is_complete(ckpt, card["epochs"], prep.fingerprints)
    with pytest.raises(CheckpointError, match=f"trained on other data \\(fingerprint {legacy}, data now 0{{16}}"):
        load_checkpoint(ckpt, ("0" * 16, "1" * 16))
    # the first command that meets it notes today's fingerprint in the card (and a resume state), so a box
    # moved later leaves it this data's model
    from gradfaith_tui.models.card import adopt_fingerprint
    from gradfaith_tui.models.registry import find_checkpoints, refuse_other_data

    (ckpt / "train_state.json").write_text(json.dumps({"epoch": 1, "data_fingerprint": legacy}))
    adopt_fingerprint(ckpt, prep.fingerprints, ("card.json", "train_state.json"))
    assert json.loads((ckpt / "train_state.json").read_text())["data_fingerprint"] == new
    (ckpt / "train_state.json").unlink()
    assert json.loads((ckpt / "card.json").read_text())["data_fingerprint"] == new
    trained_copy = Path(shutil.copytree(trained, tmp_path / "trained"))
    seed0 = trained_copy / "resnet10t" / "seed0"
    (seed0 / "card.json").write_text(json.dumps({**card, "data_fingerprint": legacy}))
    refuse_other_data(find_checkpoints(trained_copy, ["resnet10t"], [0]), discover(data), data)  # evaluate, precompute
    assert json.loads((seed0 / "card.json").read_text())["data_fingerprint"] == new

    images = np.zeros((2, 8, 8))
    cases = [CaseInfo("a.png", 0, None, False), CaseInfo("b.png", 1, None, False)]
    CacheWriter(tmp_path / "c", legacy, "s", {}, cases, images, images).close()  # as an earlier version made it
    writer = CacheWriter(tmp_path / "c", prep.fingerprints, "s", {}, cases, images, images)
    assert writer.fingerprint == legacy  # its explanation keys stay valid: nothing is recomputed
    writer.close()
    _with_box(data, case_id, (30, 30, 40, 40))  # moved: the earlier name of the data changes, today's not
    moved = prepare(discover(data)).fingerprints
    assert moved[0] == new and legacy not in moved
    CacheWriter(tmp_path / "c", moved, "s", {}, cases, images, images).close()
    load_checkpoint(ckpt, moved)  # brought up to date above: still this data's model
    load_checkpoint(seed0, moved)
    from gradfaith_tui.store.exports import store_evaluation

    CacheWriter(tmp_path / "e", legacy, "s", {}, cases, images, images).close()
    store_evaluation(tmp_path / "e", {}, lambda m: None, new)  # `evaluate` into a cache notes today's name too
    meta = dict(sqlite3.connect(tmp_path / "e" / "audit.sqlite").execute("SELECT key, value FROM meta"))
    assert (meta["fingerprint"], meta["data_fingerprint"]) == (legacy, new)
    with pytest.raises(CacheError, match="built from other data"):
        CacheWriter(tmp_path / "c", ("0" * 16,), "s", {}, cases, images, images)
