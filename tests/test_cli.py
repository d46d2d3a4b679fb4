"""The command line as a user meets it: real subprocesses, one-line errors, exit codes."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradfaith_tui import __version__


def run(*args, cwd=None, timeout=300):
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "gradfaith_tui", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.rstrip("\n").splitlines()  # nothing before it either (an empty line, say)
    assert len(lines) == 1 and lines[0].startswith("gradfaith-tui: error: "), res.stderr
    for n in needles:
        assert n in lines[0]
    assert "Traceback" not in res.stderr


def test_version():
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"gradfaith-tui {__version__}"


def test_missing_data_folder(tmp_path):
    assert_one_line_error(run("train", "--data", tmp_path / "nope", "--checkpoints", tmp_path / "ck"),
                          "--data", "folder not found")
    for cmd in ("check", "split"):  # an argument there, not --data
        assert_one_line_error(run("data", cmd, tmp_path / "nope"), f"DATA: folder (or CSV manifest) not found: {tmp_path / 'nope'}")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run("train", "--data", tmp_path / "afile", "--checkpoints", tmp_path / "ck"),
                          f"--data: {tmp_path / 'afile'} is a file, not a data folder or a CSV manifest")
    assert_one_line_error(run("data", "check", tmp_path / "afile"), f"DATA: {tmp_path / 'afile'} is a file")


def test_missing_and_empty_cache(tmp_path):
    assert_one_line_error(run("explore", "--cache", tmp_path / "nope"), "--cache", "no audit cache")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "audit.sqlite").write_bytes(b"")
    assert_one_line_error(run("report", "--cache", tmp_path / "c"))


def test_explore_without_a_terminal_says_so_instead_of_drawing_into_the_pipe(tmp_path):
    from gradfaith_tui.store.synthetic import build_synthetic_cache

    cache = build_synthetic_cache(tmp_path / "c", 12)
    res = subprocess.run([sys.executable, "-m", "gradfaith_tui", "explore", "--cache", str(cache)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert_one_line_error(res, "explore: needs a terminal", f"report --cache {cache} --terminal")


def test_a_cache_whose_schema_version_is_damaged_or_other_is_one_line(phantoms, trained, tmp_path):
    import sqlite3

    from gradfaith_tui.store.synthetic import build_synthetic_cache

    cache = build_synthetic_cache(tmp_path / "c", 12)
    rebuild = "build it again with `gradfaith-tui precompute` into a new --cache folder"
    for value, says in (("x", f"cache schema version unknown ('x'), this tool reads v1; {rebuild}"),
                        ("999", "cache schema v999, this tool reads v1; upgrade gradfaith-tui to read it"),
                        (None, "cache schema version unknown (None)")):
        con = sqlite3.connect(cache / "audit.sqlite")
        if value is None:
            con.execute("DELETE FROM meta WHERE key='schema_version'")
        else:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (value,))
        con.commit()
        con.close()
        assert_one_line_error(run("report", "--cache", cache, "--out", tmp_path / "r"), says)
    before = sqlite3.connect(cache / "audit.sqlite").execute("SELECT * FROM evaluation").fetchall()
    # evaluate too, before any model runs: its table may mean something else in another version's cache
    assert_one_line_error(run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", cache),
                          "cache schema version unknown (None), this tool writes v1")
    assert sqlite3.connect(cache / "audit.sqlite").execute("SELECT * FROM evaluation").fetchall() == before


def test_unknown_model_name(phantoms, trained, tmp_path):
    assert_one_line_error(run("train", "--data", phantoms, "--checkpoints", tmp_path, "--models", "resnet9000"),
                          "unknown model 'resnet9000'")
    assert_one_line_error(run("precompute", "--data", phantoms, "--checkpoints", trained, "--cache", tmp_path / "c",
                              "--models", "densenet-s"), "no checkpoint for densenet-s")
    assert_one_line_error(run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", tmp_path / "e",
                              "--seeds", "7"), "--seeds: no checkpoint trained with seed 7", "seeds found: 0")
    assert_one_line_error(run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", tmp_path / "e",
                              "--seeds", "0,7"), "--seeds: no checkpoint trained with seed 7", "seeds found: 0")
    assert not (tmp_path / "e").exists()  # a failed evaluate leaves no empty --cache folder behind


def test_bad_option_values(tmp_path):
    assert_one_line_error(run("data", "synth", tmp_path, "--shortcut", "purple"), "--shortcut")
    assert_one_line_error(run("train", "--seeds", "a,b", "--data", tmp_path), "--seeds")


def test_synth_then_check_json(tmp_path):
    res = run("data", "synth", tmp_path / "ph", "--patients", "9", "--slices", "2", "--size", "48", "--balance", "1,1,1")
    assert res.returncode == 0, res.stderr
    res = run("data", "check", tmp_path / "ph", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n_images"] == 18 and report["usable"] and report["patients"] == 9
    assert {k: v["total"] for k, v in report["classes"].items()} == {"Normal": 6, "Benign": 6, "Malignant": 6}
    assert report["classes"]["Benign"]["masks"] == 6


def test_evaluate_and_report(phantoms, trained, cache, tmp_path):
    res = run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    assert "Table I" in res.stdout and "resnet10t/seed0" in res.stdout
    body = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert set(body) == {"resnet10t/seed0", "resnet10t/seed1", "vit-tiny-p8/seed0", "vit-tiny-p8/seed1"}
    res = run("report", "--cache", cache, "--out", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Table I" in text and "resnet10t/seed0" in text and "Consist" in text


def test_evaluate_into_an_audit_cache_reaches_its_report_and_outlives_a_precompute(phantoms, trained, cache, tmp_path):
    import shutil

    from gradfaith_tui.pipeline import precompute
    from gradfaith_tui.store.reader import CacheReader

    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    res = run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", copy, "--models", "resnet10t",
              "--seeds", "0")
    assert res.returncode == 0, res.stderr
    measured = json.loads((copy / "evaluation.json").read_text())["resnet10t/seed0"]["timing"]["latency_ms"]
    r = CacheReader(copy)
    assert r.evaluation()["resnet10t/seed0"]["timing"]["latency_ms"] == measured  # what the report reads
    r.close()
    precompute(phantoms, trained, copy, warn=lambda m: None, with_timing=False)  # nothing new to compute
    assert json.loads((copy / "evaluation.json").read_text())["resnet10t/seed0"]["timing"]["latency_ms"] == measured


def test_evaluate_puts_in_an_audit_cache_only_the_checkpoints_it_holds(phantoms, trained, cache, tmp_path):
    import shutil
    import sqlite3

    from gradfaith_tui.locks import writer_lock
    from gradfaith_tui.store.exports import store_evaluation

    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    con = sqlite3.connect(copy / "audit.sqlite")
    with con:  # the cache now holds other weights under this name
        con.execute("UPDATE models SET checkpoint_hash='0123456789abcdef@32' WHERE model_id='resnet10t/seed0'")
    stored = con.execute("SELECT body FROM evaluation WHERE model_id='resnet10t/seed0'").fetchone()[0]
    con.close()
    res = run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", copy, "--models", "resnet10t")
    assert res.returncode == 0, res.stderr
    assert "resnet10t/seed0: another checkpoint than the one this audit cache holds" in res.stderr
    con = sqlite3.connect(copy / "audit.sqlite")
    assert con.execute("SELECT body FROM evaluation WHERE model_id='resnet10t/seed0'").fetchone()[0] == stored
    with con:
        con.execute("DROP TABLE evaluation")  # a database that cannot take them: the files still can
    con.close()
    said = []
    store_evaluation(copy, {"resnet10t/seed1": {"weights_sha1": None, "img_size": 32}}, said.append)
    assert len(said) == 1 and "could not take these results" in said[0]
    with writer_lock(copy, "precompute"):  # a run writing there: refused before any model runs
        res = run("evaluate", "--data", phantoms, "--checkpoints", trained, "--cache", copy)
    assert res.returncode != 0 and "Table I" not in res.stdout
    assert_one_line_error(res, "another precompute is writing there")  # the holder names its work


def test_demo_end_to_end_prints_a_summary_when_not_a_terminal(tmp_path):
    args = ["demo", "--data", tmp_path / "ph", "--checkpoints", tmp_path / "ck", "--cache", tmp_path / "cache",
            "--patients", "10", "--epochs", "1", "--img-size", "32"]
    # fewer patients leave a class out of a split (9: no Malignant slice in validation): refused before anything
    assert_one_line_error(run(*args[:-6], "--patients", "9"), "--patients", "greater than or equal to 10")
    res = run(*args, timeout=600)
    assert res.returncode == 0, res.stderr
    for name in ("resnet10t", "resnet14t", "densenet-s", "tinynet_e", "vit-tiny-p8"):
        assert f"{name}/seed0" in res.stdout and f"{name}/seed1" in res.stdout
    assert "Consist" in res.stdout and str(tmp_path / "cache") in res.stdout
    t = time.perf_counter()
    again = run(*args)
    assert again.returncode == 0 and "is current, reusing it" in again.stderr
    assert time.perf_counter() - t < 10, "a second demo must not retrain or recompute"


def test_train_says_when_cuda_graphs_could_not_be_recorded_and_takes_no_cuda_graphs(phantoms, tmp_path):
    """Recording is tried on the CPU here (it cannot succeed there), as a net that cannot be recorded would fail."""
    boot = ("import sys; from gradfaith_tui.models import precision; precision.GRAPH_DEVICES = ('cpu',); "
            "from gradfaith_tui.cli import main; sys.argv[0] = 'gradfaith-tui'; main()")
    args = ["train", "--data", phantoms, "--models", "resnet10t", "--seeds", "0", "--epochs", "1", "--img-size", "32"]
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-c", boot, *map(str, args), "--checkpoints", tmp_path / "a"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "train resnet10t/seed0: plain steps, no graph: " in res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-c", boot, *map(str, args), "--checkpoints", tmp_path / "b", "--no-cuda-graphs"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "plain steps" not in res.stdout + res.stderr


def test_precompute_batches_64_cases_on_cuda_and_32_elsewhere_unless_told(monkeypatch, tmp_path):
    """The GPU figures in the README were measured at batch 64; a CPU gains nothing from more."""
    from typer.testing import CliRunner

    import gradfaith_tui.cli.audit as audit
    import gradfaith_tui.pipeline as pipeline
    from gradfaith_tui.cli import app

    seen = []
    monkeypatch.setattr(pipeline, "precompute", lambda *a, **k: seen.append((a[8], a[5].batch_size)))
    monkeypatch.setattr(audit, "check_device", lambda d: d)  # no GPU here: the choice, not the run
    for args in (["--device", "cpu"], ["--device", "cuda"], ["--device", "cuda:1"], ["--device", "cuda", "--batch-size", "8"]):
        res = CliRunner().invoke(app, ["precompute", "--cache", str(tmp_path / "c"), *args])
        assert res.exit_code == 0, res.output
    assert seen == [("cpu", 32), ("cuda", 64), ("cuda:1", 64), ("cuda", 8)]


def test_a_path_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(run("data", "synth", tmp_path / "a-file" / "phantoms", "--patients", "1", "--slices", "1"),
                          f"OUT: {tmp_path / 'a-file' / 'phantoms'} cannot be a folder ({tmp_path / 'a-file'} is a file)")
    a_file = tmp_path / "a-file"  # a file where a folder option wants a folder: named before any work starts
    for args, option in ((("train", "--models", "resnet10t", "--epochs", "1"), "--checkpoints"),
                         (("evaluate",), "--checkpoints"), (("report", "--cache", tmp_path), "--out"),
                         (("precompute",), "--cache"), (("explore",), "--cache"),
                         (("explore", "--cache", tmp_path), "--export-dir")):
        assert_one_line_error(run(*args, option, a_file), f"{option}: {a_file} is a file, not a folder")
        # a folder below a file: named as such, not "Not a directory" from deep inside
        assert_one_line_error(run(*args, option, a_file / "x"), f"{option}: {a_file / 'x'} cannot be a folder "
                                                                 f"({a_file} is a file)")


def test_a_mistyped_option_or_value_is_one_line_naming_it():
    assert_one_line_error(run("train", "--epochs", "0"), "'--epochs'", "gradfaith-tui train --help")
    assert_one_line_error(run("precompute", "--no-such-option"), "--no-such-option")
    assert_one_line_error(run("no-such-command"), "no-such-command")
    assert_one_line_error(run("train", "--seeds=-1"), "--seeds", "-1")
    assert_one_line_error(run("train", "--lr", "inf"), "--lr", "inf")  # before a checkpoint is found and skipped
    assert_one_line_error(run("train", "--window", "nan,40"), "--window", "finite")
    for tau in ("nan", "0"):  # nan was refused as "should be less than or equal to 1"; 0 was taken
        assert_one_line_error(run("precompute", "--tau", tau), "--tau: must be a number above 0 and at most 1")
    assert_one_line_error(run("train", "--models", ""), "--models")  # not "every model"
    res = run("train", "--models", "resnet10t", "--pretrained-file", ".")  # before any bar is drawn
    assert_one_line_error(res, "--pretrained-file: .: a folder, not a weights file")
    res = run()  # no command: the help, as before
    assert res.returncode == 2 and "Commands" in res.stdout + res.stderr and "error" not in res.stderr


def test_ctrl_c_says_the_work_is_kept_and_exits_130(phantoms, trained, tmp_path):
    import signal
    import sqlite3

    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "gradfaith_tui", "precompute", "--data", str(phantoms),
                             "--checkpoints", str(trained), "--cache", str(out), "--batch-size", "1", "--deep",
                             "--sanity-cases", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, done = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None and done < 2:
        try:
            con = sqlite3.connect(f"file:{out / 'audit.sqlite'}?mode=ro", uri=True)
            done = con.execute("SELECT COUNT(*) FROM metrics WHERE name='faith'").fetchone()[0]
            con.close()
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal
    time.sleep(0.02)
    twice = proc.poll() is None
    if twice:  # an impatient second Ctrl-C while it closes: said, not a traceback
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # -2: the second one came after Python gave SIGINT back to the system on its way out, which a shell
    # reports as 130 too
    assert proc.returncode == 130 or (twice and proc.returncode == -signal.SIGINT), err
    said = re.fullmatch(r"gradfaith-tui: interrupted; (\d+) maps? made by this run (is|are) saved, rerun to resume",
                        err.rstrip().splitlines()[-1])
    assert said and int(said[1]) >= done, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_precompute_bars_show_the_rate_counted_from_where_a_run_resumed(monkeypatch):
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    import gradfaith_tui.cli.progress as progress

    clock = iter([100.0, 102.0, 104.0])
    monkeypatch.setattr(progress, "perf_counter", lambda: next(clock))
    with Progress(TextColumn("{task.fields[info]}"), console=Console(file=io.StringIO())) as p:
        update = progress.precompute_progress(p)
        update("m/seed0", 40, 200)  # 40 cases found done: not counted
        assert p.tasks[0].fields["info"] == ""
        update("m/seed0", 104, 200)
        assert p.tasks[0].fields["info"] == "32 maps/s"
        update("m/seed0", 200, 200)
        assert p.tasks[0].fields["info"] == "40 maps/s"


def test_warnings_stay_on_one_line_and_are_not_read_as_markup(capsys):
    from gradfaith_tui.cli.progress import warn

    warn("The IQ-OTHNCCD lung cancer dataset/" * 3 + "Bengin case (1).jpg: not a readable image; scan[bold][1].png")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("scan[bold][1].png\n")


def test_running_out_of_memory_anywhere_is_one_line(monkeypatch, capsys):
    import gradfaith_tui.cli as cli

    def huge(**kwargs):
        raise MemoryError()  # e.g. numpy asked for a 999999999-pixel phantom
    monkeypatch.setattr(cli, "app", huge)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "out of memory" in err


def _digests(root):
    import hashlib

    return {p.relative_to(root): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _iq_folder(root):
    """A user's dataset in the IQ-OTH/NCCD layout, with the very names the phantoms use."""
    (root / "Normal cases").mkdir(parents=True)
    (root / "Normal cases" / "Normal case (1).jpg").write_bytes(b"the user's scan")
    return root


def test_synth_refuses_a_folder_that_is_not_empty_and_force_only_replaces_phantoms(tmp_path):
    iq = _iq_folder(tmp_path / "iq")
    before = _digests(iq)
    assert_one_line_error(run("data", "synth", iq, "--patients", "3", "--slices", "1", "--size", "32"),
                          str(iq), "not empty", "--force")
    assert_one_line_error(run("data", "synth", iq, "--force", "--patients", "3", "--slices", "1", "--size", "32"),
                          str(iq), "holds other data")
    assert _digests(iq) == before


def test_synth_force_replaces_phantoms_with_nothing_stale_left(tmp_path):
    ph = tmp_path / "ph"
    assert run("data", "synth", ph, "--patients", "9", "--slices", "2", "--size", "32").returncode == 0
    assert run("data", "split", ph).returncode == 0 and (ph / "splits").is_dir()
    assert_one_line_error(run("data", "synth", ph, "--patients", "3", "--slices", "1", "--size", "32"), "--force")
    res = run("data", "synth", ph, "--force", "--patients", "5", "--slices", "1", "--size", "32", "--seed", "5")
    assert res.returncode == 0, res.stderr
    rows = (ph / "manifest.csv").read_text().splitlines()[1:]
    listed = {r.split(",")[0] for r in rows} | {r.split(",")[3] for r in rows if r.split(",")[3]}
    assert {p.as_posix() for p in _digests(ph)} == listed | {"manifest.csv", ".gradfaith-phantoms"}
    assert json.loads((ph / ".gradfaith-phantoms").read_text())["seed"] == 5
    res = run("data", "check", ph, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["n_images"] == 5  # fewer leave a split empty: not usable


def _demo(monkeypatch, *args):
    from typer.testing import CliRunner

    import gradfaith_tui.cli.demo as demo
    from gradfaith_tui.cli import app

    monkeypatch.setattr(demo, "_build", lambda *a, **k: (_ for _ in ()).throw(AssertionError("demo must not train")))
    return CliRunner().invoke(app, ["demo", *map(str, args), "--summary"])


def test_demo_refuses_other_data_before_writing_anything(monkeypatch, tmp_path):
    from gradfaith_tui.errors import DataError

    iq = _iq_folder(tmp_path / "iq")
    before = _digests(iq)
    res = _demo(monkeypatch, "--data", iq, "--checkpoints", tmp_path / "ck", "--cache", tmp_path / "c")
    assert isinstance(res.exception, DataError) and "holds other data" in str(res.exception), res.output
    assert _digests(iq) == before and sorted(p.name for p in tmp_path.iterdir()) == ["iq"]


def test_demo_checks_the_device_before_writing_anything(monkeypatch, tmp_path):
    from gradfaith_tui.errors import GradfaithError

    res = _demo(monkeypatch, "--data", tmp_path / "ph", "--checkpoints", tmp_path / "ck", "--cache", tmp_path / "c",
                "--device", "foo")
    assert isinstance(res.exception, GradfaithError) and "--device" in str(res.exception), res.output
    assert list(tmp_path.iterdir()) == []


def test_demo_checks_that_cache_is_no_file_before_writing_anything(monkeypatch, tmp_path):
    from gradfaith_tui.errors import CacheError

    (tmp_path / "afile").write_text("x")
    res = _demo(monkeypatch, "--data", tmp_path / "ph", "--checkpoints", tmp_path / "ck", "--cache", tmp_path / "afile")
    assert isinstance(res.exception, CacheError) and f"--cache: {tmp_path / 'afile'} is a file" in str(res.exception)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # no phantoms, no models


def test_out_of_range_seeds_and_sizes_are_one_line(tmp_path):
    assert_one_line_error(run("data", "check", tmp_path, "--split-seed", "-1"), "--split-seed")
    assert_one_line_error(run("data", "split", tmp_path, "--split-seed", "-1"), "--split-seed")
    assert_one_line_error(run("train", "--split-seed", "-1"), "--split-seed")
    assert_one_line_error(run("data", "synth", tmp_path / "a", "--seed", "-5"), "--seed")
    assert_one_line_error(run("data", "synth", tmp_path / "a", "--patients", "99999999999999999999"), "--patients")
    assert_one_line_error(run("data", "synth", tmp_path / "a", "--size", "999999999"), "--size")
    assert list(tmp_path.iterdir()) == []


def test_only_cpu_cuda_and_cuda_n_are_devices():
    import pytest
    import torch

    from gradfaith_tui.cli.options import check_device
    from gradfaith_tui.errors import GradfaithError

    assert check_device("cpu") == "cpu"
    for bad in ("mps", "meta", "cpu:0", "xla", "cuda:x", ""):
        with pytest.raises(GradfaithError, match="^--device: .*use cpu, cuda or cuda:N"):
            check_device(bad)
    with pytest.raises(GradfaithError, match="^--device: 'cuda:99' asked for, but "):
        check_device("cuda:99")
    if torch.cuda.is_available():
        assert check_device("cuda:0") == "cuda:0"
    assert_one_line_error(run("train", "--device", "mps"), "--device: 'mps'")


def test_import_refuses_to_replace_a_checkpoint_and_bad_names_or_arches(phantoms, tmp_path):
    import timm
    import torch

    torch.save(timm.create_model("resnet10t", num_classes=3).state_dict(), tmp_path / "w.pth")
    args = ["import", tmp_path / "w.pth", "--arch", "resnet10t", "--img-size", "32", "--data", phantoms,
            "--checkpoints", tmp_path / "ck"]
    assert run(*args).returncode == 0
    assert_one_line_error(run(*args), "ck/resnet10t/seed0: a checkpoint is already there", "--force")
    assert_one_line_error(run(*args, "--name", "../../escape"), "--name: '../../escape'")
    assert_one_line_error(run(*args, "--seed=-1"), "--seed")
    assert_one_line_error(run(*args[:3], "nosuch", *args[4:]), "--arch: unknown timm architecture 'nosuch'")


def test_train_that_would_lose_finished_epochs_stops_with_one_line(phantoms, tmp_path):
    from gradfaith_tui.config import spec_for
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import TrainConfig

    fit_all(phantoms, tmp_path, [spec_for("resnet10t")], [0], TrainConfig(epochs=1, batch_size=16, lr=1e-3, img_size=32))
    res = run("train", "--data", phantoms, "--checkpoints", tmp_path, "--models", "resnet10t", "--seeds", "0",
              "--epochs", "2", "--img-size", "32", "--batch-size", "16", "--lr", "0.001")
    assert_one_line_error(res, "resnet10t/seed0: already trained with --epochs 1, now 2", "--restart")


def test_an_interrupted_synth_says_nothing_was_written_and_a_read_only_folder_is_named():
    from gradfaith_tui.cli import _kept_on_interrupt

    assert _kept_on_interrupt(["data", "synth", "x"]) == "no phantoms were written; the folder is as it was"
    assert _kept_on_interrupt(["train", "--epochs", "3"]) == "finished epochs are saved, rerun to resume"
    assert _kept_on_interrupt(["evaluate"]).startswith("nothing was written")  # it had said work was saved
    assert _kept_on_interrupt(["data", "check", "x"]) == "stopped, rerun it"


def test_an_interrupted_precompute_says_how_many_maps_it_saved(monkeypatch):
    from gradfaith_tui.cli import _kept_on_interrupt
    from gradfaith_tui.cli import progress

    monkeypatch.setattr(progress, "MAPS_MADE", {})  # stopped while the models loaded: it had said maps were saved
    assert _kept_on_interrupt(["precompute"]) == "no maps were made yet, so none were saved, rerun it"
    assert _kept_on_interrupt(["demo"]) == "finished epochs are saved; no maps were made yet, so none were saved, rerun it"
    monkeypatch.setattr(progress, "MAPS_MADE", {"a/seed0": 1200, "b/seed0": 34})
    assert _kept_on_interrupt(["precompute", "--deep"]) == "1,234 maps made by this run are saved, rerun to resume"


def test_synth_into_a_folder_it_cannot_write_names_that_folder(tmp_path, monkeypatch):
    import tempfile

    from gradfaith_tui.data.phantom import PhantomConfig, write_dataset
    from gradfaith_tui.errors import DataError

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkdtemp", denied)  # as in a read-only folder (root ignores chmod)
    with pytest.raises(DataError, match=r"ro: cannot write there \(Permission denied\)$"):
        write_dataset(PhantomConfig(n_patients=3, slices_per_patient=1, size=32), tmp_path / "ro")


def test_a_second_train_into_a_busy_folder_prints_its_one_line_and_no_progress(phantoms, tmp_path):
    from gradfaith_tui.locks import writer_lock

    out = tmp_path / "ck" / "resnet10t" / "seed0"
    out.mkdir(parents=True)
    with writer_lock(out, "train"):  # a train at work there
        res = run("train", "--data", phantoms, "--checkpoints", tmp_path / "ck", "--models", "resnet10t", "--seeds", "0",
                  "--epochs", "1", "--img-size", "32")
    assert_one_line_error(res, "another train is writing there")
    assert res.stdout == ""  # no progress bar was started for it


def test_a_full_disk_is_said_in_one_line_naming_the_folder_or_the_database(monkeypatch, tmp_path, capsys):
    import errno
    import sqlite3

    import gradfaith_tui.cli as cli
    import gradfaith_tui.data.phantom as phantom

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")  # PIL's write: no file name in it

    monkeypatch.setattr(phantom, "write_dataset", full)
    monkeypatch.setattr(sys, "argv", ["gradfaith-tui", "data", "synth", str(tmp_path / "ph")])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err == (f"gradfaith-tui: error: {tmp_path / 'ph'}: no space left on the device "
                                             "(nothing was kept: free some space, or pass a smaller --patients or --size)\n")

    def db_full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cli, "app", db_full)
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().err == ("gradfaith-tui: error: the cache's database: database or disk is full (what was "
                                       "committed before is kept: free some space and rerun)\n")


def test_a_model_or_seed_given_twice_counts_once(tmp_path):
    from gradfaith_tui.cli.options import names, seeds

    assert names("resnet10t, tinynet_e,resnet10t") == ["resnet10t", "tinynet_e"]
    assert seeds("1,0,1,0") == [1, 0]  # `0,0` trained seed 0 twice and counted two checkpoints


def test_an_empty_entry_in_a_comma_list_is_refused_naming_the_option():
    from gradfaith_tui.cli.options import names, seeds
    from gradfaith_tui.errors import GradfaithError

    for parse, option, value in ((seeds, "--seeds", "0,,1"), (seeds, "--seeds", "0,1,"), (names, "--models", "a,,b"),
                                 (names, "--models", ",a")):
        with pytest.raises(GradfaithError, match=f"^{option}: '{value}' has an empty entry"):
            parse(value)
    assert_one_line_error(run("train", "--seeds", "0,,1"), "--seeds: '0,,1' has an empty entry")
    assert_one_line_error(run("precompute", "--models", "a, ,b"), "--models: 'a, ,b' has an empty entry")


def test_pretrained_file_that_holds_no_weights_is_named_before_anything_is_made(tmp_path):
    notes = tmp_path / "notes.pth"
    notes.write_text("not weights")
    ck = tmp_path / "ck"
    res = run("train", "--data", tmp_path, "--checkpoints", ck, "--models", "resnet10t", "--pretrained-file", notes)
    assert_one_line_error(res, f"--pretrained-file: {notes}: not a weights file (neither safetensors nor a PyTorch file)")
    assert not ck.exists()
    assert_one_line_error(run("train", "--lr", "0"), "--lr", "positive")  # the help said x>=0.0
    assert "x>=0.0" not in run("train", "--help").stdout


def test_one_pretrained_file_for_models_of_several_architectures_is_refused_before_training(tmp_path):
    import torch

    weights = tmp_path / "resnet10t.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    ck = tmp_path / "ck"  # it was found once the first model had trained, at the second one's turn
    res = run("train", "--data", tmp_path, "--checkpoints", ck, "--models", "resnet10t,vit-tiny-p8",
              "--pretrained-file", weights)
    assert_one_line_error(res, "--pretrained-file: one weights file fits one architecture, and --models names 2 "
                               "(resnet10t, vit-tiny-p8)")
    assert_one_line_error(run("train", "--data", tmp_path, "--checkpoints", ck, "--pretrained-file", weights),
                          "the demo profile trains 5")
    assert not ck.exists()


def test_demo_data_that_is_a_file_is_said_so(tmp_path):
    f = tmp_path / "README.md"
    f.write_text("# notes")
    assert_one_line_error(run("demo", "--data", f, "--checkpoints", tmp_path / "ck", "--cache", tmp_path / "c",
                              "--summary"), f"--data: {f} is a file, not a folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a check as another user")
def test_demo_names_a_cache_it_cannot_write_before_it_writes_phantoms_or_trains():
    import tempfile

    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="gradfaith-demo-"))
    try:
        top.chmod(0o755)  # root's: another user cannot make the cache in it
        work = top / "work"
        work.mkdir()
        work.chmod(0o777)
        env = {**os.environ, "HOME": str(work), "MPLCONFIGDIR": str(work / "mpl"), "PYTHONDONTWRITEBYTECODE": "1"}
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        res = subprocess.run([*nobody, sys.executable, "-m", "gradfaith_tui", "demo", "--data", str(work / "ph"),
                              "--checkpoints", str(work / "ck"), "--cache", str(top / "cache"), "--summary",
                              "--patients", "10", "--epochs", "1", "--img-size", "16"],
                             capture_output=True, text=True, env=env, timeout=600)
        assert_one_line_error(res, f"--cache: cannot make the folder {top / 'cache'} ({top} is not a folder this "
                                   "user can write)")
        assert not (work / "ph").exists() and not (work / "ck").exists()  # found after both, before
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_progress_bars_keep_counts_and_times_whole_in_a_narrow_terminal(monkeypatch):
    import io

    from rich.console import Console

    import gradfaith_tui.cli.progress as progress

    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, width=60))
    with progress.bars() as bars:
        task = bars.add_task("explain densenet121-a-long-name/seed0", total=1234, info="12.3 maps/s")
        bars.update(task, completed=567)
    line = next(x for x in out.getvalue().splitlines() if "567" in x)
    assert " 567/1234 12.3 maps/s 0:00:0" in line and len(line) <= 60  # once: "5…" and "0:0…"
    assert line.startswith("explain densenet121-") and "…" in line.split()[1]  # the name gives way instead
