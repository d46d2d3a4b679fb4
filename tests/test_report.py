"""The audit report: its tables equal the cache's numbers, its figures are written, its files are reproducible."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradfaith_tui.metrics.catalog import FAIL_RHO
from gradfaith_tui.report import markdown
from gradfaith_tui.report.build import build
from gradfaith_tui.report.stats import bootstrap_ci, holm, paired_test
from gradfaith_tui.report.write import write_report
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache

N_CASES = 60
NOTE = "heat on the border | see ![x](http://example.com/a.png)"  # markup a note must not turn into


def _add_evaluation_and_extra_metrics(root: Path) -> None:
    """Synthetic Table I bodies have no timing: add made-up ones, plus a new and an unknown metric for one model."""
    rng = np.random.default_rng(7)
    con = sqlite3.connect(root / "audit.sqlite")
    for model_id, body in con.execute("SELECT model_id, body FROM evaluation ORDER BY model_id").fetchall():
        body = {**json.loads(body),
                "timing": {"latency_ms": float(rng.uniform(1, 20)), "throughput_ips": 100.0, "device": "cpu (2 threads)"}}
        con.execute("UPDATE evaluation SET body=? WHERE model_id=?", (json.dumps(body), model_id))
    expl = con.execute("SELECT expl_id FROM explanations ORDER BY expl_id LIMIT 1").fetchone()[0]
    con.executemany("INSERT INTO flags (idx, category, note, created, undone) VALUES (?,?,?,?,?)", [
        (5, "shortcut", NOTE, "2025-01-01T00:00:00+00:00", 0), (6, "wrong-label", "withdrawn", "2025-01-02T00:00:00+00:00", 1)])
    for name in ("deletion_auc", "mystery_metric"):
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?)",
                        [(expl, i, name, float(v)) for i, v in enumerate(rng.random(N_CASES))])
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = build_synthetic_cache(tmp_path_factory.mktemp("cache"), N_CASES, models=3, seeds=2, size=32, grid=4)
    _add_evaluation_and_extra_metrics(root)
    return root


@pytest.fixture(scope="module")
def made(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report, paths = write_report(CacheReader(cache), out, "all")
    return out, report, paths


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after a heading, as dicts keyed by its header."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, r)) for r in body]


def test_table1_equals_the_cache_evaluation(made, cache):
    out, _, _ = made
    rows = md_table((out / "report.md").read_text(), "## Table I")
    evals = CacheReader(cache).evaluation()
    assert {r["Model"] for r in rows} == set(evals)
    names = {"Sensitivity": "sensitivity", "Specificity": "specificity", "Precision": "precision",
             "Recall": "recall", "F1": "f1", "Accuracy": "accuracy"}
    for r in rows:
        body = evals[r["Model"]]
        for col, key in names.items():
            assert float(r[col]) == pytest.approx(body["macro"][key], abs=5e-4)
        assert float(r["ms/image"]) == pytest.approx(body["timing"]["latency_ms"], abs=5e-3)
    con = sqlite3.connect(cache / "audit.sqlite")
    for model_id, body in evals.items():  # the synthetic Table I is the models' own predictions, counted
        cm = np.zeros((3, 3), int)
        for t, p, k in con.execute("SELECT c.label, p.pred, COUNT(*) FROM predictions p JOIN cases c USING (idx) "
                                   "WHERE p.model_id=? GROUP BY 1, 2", (model_id,)):
            cm[t, p] = k
        assert body["confusion"] == cm.tolist() and body["n"] == N_CASES
        assert body["macro"]["accuracy"] == pytest.approx(np.trace(cm) / N_CASES)
    con.close()
    paper = md_table((out / "report.md").read_text(), "the paper's published Table I")
    assert paper[0]["Paper's model"] == "ResNet50" and paper[0]["F1"] == "0.79" and paper[-1]["Time (ms)"] == "25"


def test_faithfulness_means_equal_the_case_rows_and_the_ci_brackets_them(made, cache):
    out, _, _ = made
    reader = CacheReader(cache)
    cases = reader.rows(range(reader.n_cases))
    rows = md_table((out / "report.md").read_text(), "## Faithfulness")
    labels = {"Faith": "faith", "LocAcc": "locacc", "IoU": "iou", "Consist": "consist", "Deletion AUC": "deletion_auc",
              "mystery\\_metric": "mystery_metric"}  # (Markdown-escaped)
    assert labels.keys() <= {r["Metric"] for r in rows}  # every stored metric shows, known to the catalogue or not
    checked = 0
    for r in rows:
        if r["Metric"] not in labels:
            continue
        vals = [c.results[r["Model"]].metrics.get(labels[r["Metric"]]) for c in cases]
        vals = np.array([v for v in vals if v is not None], dtype=float)
        if not len(vals):
            assert r["Mean"] == "–"
            continue
        assert int(r["n"]) == len(vals)
        assert float(r["Mean"]) == pytest.approx(vals.mean(), abs=5e-4)
        lo, hi = map(float, re.findall(r"-?\d+\.\d+", r["95% CI"]))
        assert lo <= float(r["Mean"]) <= hi
        checked += 1
    assert checked >= 13  # 4 paper metrics x 3 models + the added ones
    paired = md_table((out / "report.md").read_text(), "### Paired tests")
    assert {(p["Model A"], p["Model B"]) for p in paired if p["Metric"] == "Faith"} == {
        ("resnet10t", "resnet14t"), ("resnet10t", "densenet-s"), ("resnet14t", "densenet-s")}
    assert "Wilcoxon signed-rank" in (out / "report.md").read_text()


def test_every_figure_is_written_and_referenced(made):
    out, report, paths = made
    text = (out / "report.md").read_text()
    for key in ("fig1", "fig2", "fig3", "fig4"):
        f = report.figure(key)
        assert f.written and (out / f.file).stat().st_size > 1000 and f"]({f.file})" in text
    assert report.figure("flagged").written and report.figure("flagged").idxs == [5]
    assert "lowest Faith" in report.figure("fig2").caption and "seed 0" in report.figure("fig3").caption
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_html_is_self_contained(made):
    out, _, _ = made
    html = (out / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert len(refs) == 5 and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<table>" in html and "<script" not in html


def test_same_cache_gives_identical_files(made, cache, tmp_path):
    out, _, _ = made
    write_report(CacheReader(cache), tmp_path, "all")
    for name in ("report.md", "report.html", "figures/fig1_sens_spec_f1.png", "figures/fig2_worst_faith.png",
                 "figures/fig3_random_cases.png", "figures/fig4_confusion.png"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_sanity_verdicts_follow_the_last_stage_of_the_cache(made, cache):
    out, report, _ = made
    text = (out / "report.md").read_text()
    con = sqlite3.connect(cache / "audit.sqlite")
    last = con.execute("SELECT model_id, method, spearman, n_cases FROM sanity s WHERE stage = "
                       "(SELECT MAX(stage) FROM sanity t WHERE t.model_id = s.model_id AND t.method = s.method)").fetchall()
    n_stages = con.execute("SELECT COUNT(*) FROM sanity").fetchone()[0]
    refs = {r[0] for r in con.execute("SELECT model_id FROM models WHERE is_ref = 1")}
    con.close()
    assert f"mean Spearman after the last stage is ≥ {FAIL_RHO:.2f}" in text
    rows = {(r["Model"], r["Method"]): r for r in md_table(text, "## Sanity check")}
    assert set(rows) == {(m, meth) for m, meth, _, _ in last} and {m for m, _ in rows} == refs
    for model_id, method, rho, n in last:
        r = rows[(model_id, method)]
        assert r["Verdict"] == ("**FAIL**" if rho >= FAIL_RHO else "PASS")
        assert float(r["Last-stage Spearman"]) == pytest.approx(rho, abs=5e-4) and int(r["Cases"]) == n
    assert {r["Verdict"] for r in rows.values()} == {"PASS", "**FAIL**"}  # the synthetic cache has one failing model
    assert len(md_table(text, "Stages (each one keeps")) == n_stages
    assert [s.passed for s in report.sanity.results] == [r["Verdict"] == "PASS" for r in rows.values()]


def test_suspects_are_counted_per_model_and_rule_with_thresholds_and_examples(made, cache):
    from gradfaith_tui.metrics.shortcuts import RULES

    out, _, _ = made
    text = (out / "report.md").read_text()
    con = sqlite3.connect(cache / "audit.sqlite")
    counts = {(m, r): n for m, r, n in con.execute("SELECT model_id, rule, COUNT(*) FROM suspects GROUP BY 1, 2")}
    cases = dict(con.execute("SELECT model_id, COUNT(DISTINCT idx) FROM suspects GROUP BY 1").fetchall())
    reasons = {(i, m, r): why for i, m, r, why in con.execute("SELECT idx, model_id, rule, reason FROM suspects")}
    ids = dict(con.execute("SELECT case_id, idx FROM cases").fetchall())
    con.close()
    assert counts and 0 < sum(cases.values()) <= 0.1 * N_CASES * len(cases)  # ~5% of cases per model
    rules = {r["Rule"]: r for r in md_table(text, "## Shortcut suspects")}
    assert list(rules) == [r.name for r in RULES]
    for r in RULES:
        shown = f"{r.threshold:.0%}" if r.metric.endswith("_heat") else f"{r.threshold:g}"
        assert f"≥ {shown}" in rules[r.name]["Threshold"]
    table = md_table(text, "Suspects per model and rule")
    assert {r["Model"] for r in table} == set(cases)
    for row in table:
        assert int(row["Cases"]) == cases[row["Model"]]
        assert all(int(row[r.name]) == counts.get((row["Model"], r.name), 0) for r in RULES)
    examples = md_table(text, "Examples (the strongest evidence per rule)")
    assert examples and all(reasons[(ids[e["Case"]], e["Model"], e["Rule"])] == e["Reason"] for e in examples)


def test_missing_results_are_said_plainly(cache, tmp_path):
    copy = Path(shutil.copytree(cache, tmp_path / "c"))
    con = sqlite3.connect(copy / "audit.sqlite")
    for table in ("suspects", "sanity", "evaluation"):
        con.execute(f"DELETE FROM {table}")
    con.commit()
    report = build(CacheReader(copy))
    text = markdown.render(report)
    assert "No Table I in this cache" in text and not report.confusion
    assert "*Not computed in this cache*" in text.split("## Sanity check", 1)[1].split("## Shortcut suspects")[0]
    assert "**No case crossed a suspect threshold** in this cache" in text and not report.suspects.total
    assert not report.sanity.results and report.suspects.computed
    con.execute("DROP TABLE suspects")  # a cache from before the engine stored suspects
    con.commit()
    con.close()
    report = build(CacheReader(copy))
    assert not report.suspects.computed
    assert "*Not computed in this cache*: it has no suspects table" in markdown.render(report)


def _edited_copy(cache: Path, dest: Path, *sql: tuple) -> Path:
    copy = Path(shutil.copytree(cache, dest))
    con = sqlite3.connect(copy / "audit.sqlite")
    for statement in sql:
        con.execute(*statement)
    con.commit()
    con.close()
    return copy


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines in the terminal


def test_data_without_masks_or_patients_gets_both_caveats_in_every_format(made, cache, tmp_path):
    from rich.console import Console

    from gradfaith_tui.report.terminal import print_report

    assert "Data caveats" not in (made[0] / "report.md").read_text()  # masks, patients, no marker: nothing applies
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE cases SET has_mask = 0, patient = NULL",),
                        ("UPDATE metrics SET value = NULL WHERE name IN ('locacc', 'iou', 'pointing_game', "
                         "'relevance_mass', 'relevance_rank')",))  # as precompute stores IQ-OTH/NCCD: no masks, no ids
    report, _ = write_report(CacheReader(copy), tmp_path / "out", "all")
    no_mask = (f"No test case has a lesion mask: the localisation metrics (LocAcc, IoU, Pointing game, Relevance mass, "
               f"Relevance rank) are absent for all {N_CASES} cases, not zero.")
    no_ids = (f"None of the {N_CASES} test cases has a patient id, so the split is by slice: slices of one patient may "
              "sit in both train and test, and Table I may be optimistic")
    assert report.caveats[0] == no_mask and report.caveats[1].startswith(no_ids) and len(report.caveats) == 2
    assert {s.metric for s in report.metric_stats} & {"locacc", "iou"} == set()  # rows of dashes: left out
    assert "faith" in {s.metric for s in report.metric_stats}
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.index("## Data caveats") < md.index("## Table I")
    paired = md[md.index("### Paired tests"):md.index("### Every checkpoint")]
    assert "| Faith |" in paired and "| LocAcc |" not in paired  # no case with a mask: no test, so no row
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Data caveats</h2>" in page and page.index("Data caveats") < page.index("Table I: classification")
    buf = Console(file=io.StringIO(), width=100)
    print_report(report, buf)
    term = _flat(buf.file.getvalue())
    assert term.startswith("What the audit found:") and term.index("Data caveats") < term.index("Table I")
    assert md.index("## What the audit found") < md.index("## Data caveats")  # the answer first, then its bounds
    for text in (md, page, term):
        assert no_mask in _flat(text) and no_ids in _flat(text)
        assert not re.search(r"\bnan\b", text, re.I)  # a value that does not exist is "–", and a test with no case no row
        assert "gradfaith-tui data check DATA" in text and "near-duplicate pairs across splits" in _flat(text)
    masked = [i for (i,) in CacheReader(cache).con.execute("SELECT idx FROM cases WHERE has_mask = 1 ORDER BY idx")]
    some = _edited_copy(cache, tmp_path / "d", ("UPDATE cases SET has_mask = 0 WHERE idx IN (?, ?)", masked[:2]))
    assert build(CacheReader(some)).caveats == [
        f"{len(masked) - 2} of {N_CASES} test cases have a lesion mask ({len(masked) - 2} of the {len(masked)} Benign "
        "or Malignant ones); localisation metrics cover only those."]


def test_a_class_missing_from_the_test_split_is_a_caveat_and_table_i_says_what_it_averages(made, cache, tmp_path):
    assert "Macro averages over the three classes (one-vs-rest)" in (made[0] / "report.md").read_text()
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE cases SET label = 2 WHERE label = 1",))  # no Benign case left
    report, _ = write_report(CacheReader(copy), tmp_path / "out", "all")
    assert report.caveats[0] == ("The test split has no Benign case: Table I averages over the 2 classes the test split "
                                 "holds (Normal, Malignant) only, and nothing here is about Benign slices "
                                 "(`gradfaith-tui data check DATA` shows the classes per split).")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Macro averages over the 2 classes the test split holds (Normal, Malignant) (one-vs-rest)" in md
    assert "three classes" not in md and "three classes" not in (tmp_path / "out" / "report.html").read_text()


def test_models_explained_with_different_settings_get_a_caveat(cache, tmp_path):
    assert not [c for c in build(CacheReader(cache)).caveats if "different settings" in c]
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE explanations SET settings = json_set(settings, '$.tau', 0.3) "
                                                "WHERE model_id LIKE 'densenet-s/%'",))
    report = build(CacheReader(copy))
    assert report.caveats[0] == (
        "The models were explained with different settings (tau 0.5 for resnet10t/seed0, resnet10t/seed1, "
        "resnet14t/seed0, resnet14t/seed1 | tau 0.3 for densenet-s/seed0, densenet-s/seed1): metrics and "
        "tests that compare them compare unlike settings, and the configuration below is only the last precompute's; "
        "rerun `gradfaith-tui precompute` with one setting for all of them.")
    write_report(CacheReader(copy), tmp_path / "out", "md")
    assert "Configuration of the last precompute:" in (tmp_path / "out" / "report.md").read_text()


def test_a_model_whose_training_was_stopped_is_said_first(cache, tmp_path):
    """precompute and evaluate warn of it; the report is what gets shared, and it said nothing."""
    assert not [c for c in build(CacheReader(cache)).incomplete if "Unfinished" in c]
    copy = _edited_copy(cache, tmp_path / "c", (
        "UPDATE models SET card = json_set(card, '$.epochs', 20, '$.epochs_done', 2) WHERE model_id = 'densenet-s/seed0'",), (
        "UPDATE models SET card = json_set(card, '$.epochs', 0, '$.epochs_done', 0) WHERE model_id = 'resnet10t/seed0'",))
    report = build(CacheReader(copy))  # (an imported model records no epochs: not unfinished)
    assert not [c for c in report.caveats if "Unfinished" in c]  # said first, above the findings
    assert report.incomplete[0] == ("Unfinished training: densenet-s/seed0 (2 of 20 epochs) was stopped before the last "
                                 "epoch, so its numbers are those of an unfinished model; rerun `gradfaith-tui train` "
                                 "with the same options, then `precompute`, to finish.")
    write_report(CacheReader(copy), tmp_path / "out", "md")
    md = _flat((tmp_path / "out" / "report.md").read_text())
    assert "**Read this first.** Unfinished training: densenet-s/seed0 (2 of 20 epochs)" in md
    assert md.index("Unfinished training") < md.index("## What the audit found")


def test_identical_files_in_the_config_give_their_caveats_and_older_caches_none(cache, tmp_path):
    config = CacheReader(cache).config
    assert "identical_files" not in config
    assert not [c for c in build(CacheReader(cache)).caveats if "identical" in c]  # no key: no claim, not even zero
    found = {"groups": 4, "across_splits": 1, "label_conflicts": 2,
             "conflict_examples": [["Bengin cases/Bengin case (3).jpg", "Malignant cases/Malignant case (9).jpg"],
                                   ["Normal cases/x.jpg", "Bengin cases/y.jpg"]]}
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE meta SET value = ? WHERE key = 'config'",
                                                (json.dumps({**config, "identical_files": found}),)))
    report = build(CacheReader(copy))
    assert report.caveats == [
        "2 groups of identical files carry different labels, e.g. Bengin cases/Bengin case (3).jpg = Malignant "
        "cases/Malignant case (9).jpg: a model cannot get both right.",
        "1 group of identical files spans more than one of train, validation and test: a test slice may have a copy "
        "the model trained on, so test scores are inflated."]
    assert _flat(report.caveats[0]) in _flat(markdown.render(report))
    within = {"groups": 2, "across_splits": 0, "label_conflicts": 0, "conflict_examples": []}
    clean = _edited_copy(cache, tmp_path / "d", ("UPDATE meta SET value = ? WHERE key = 'config'",
                                                 (json.dumps({**config, "identical_files": within}),)))
    assert build(CacheReader(clean)).caveats == []  # identical copies within one split, same label: nothing to say


def test_flagged_cases_appear_with_notes_and_undone_ones_do_not(made, cache, tmp_path):
    out, _, _ = made
    rows = md_table((out / "report.md").read_text(), "## Flagged cases")
    case_id = CacheReader(cache).rows([5])[0].case_id
    assert len(rows) == 1 and rows[0]["Category"] == "shortcut" and rows[0]["Case"] == case_id
    assert rows[0]["Note"] == "heat on the border \\| see \\!\\[x\\](http://example.com/a.png)"
    page = (out / "report.html").read_text()
    assert NOTE in page and "withdrawn" not in page and "<img src=\"http" not in page
    copy = Path(shutil.copytree(cache, tmp_path / "c"))
    con = sqlite3.connect(copy / "audit.sqlite")
    con.execute("DELETE FROM flags")
    con.commit()
    con.close()
    assert "None: no case is flagged" in markdown.render(build(CacheReader(copy)))


def test_a_rerun_removes_the_figure_the_new_report_no_longer_has(cache, tmp_path):
    copy = Path(shutil.copytree(cache, tmp_path / "c"))
    out = tmp_path / "rep"
    report, _ = write_report(CacheReader(copy), out, "md")
    stale = out / report.figure("flagged").file
    assert stale.is_file()
    con = sqlite3.connect(copy / "audit.sqlite")
    con.execute("UPDATE flags SET undone = 1")  # every flag withdrawn: the new report has no flagged-cases figure
    con.commit()
    con.close()
    report, paths = write_report(CacheReader(copy), out, "md")
    assert not report.figure("flagged").written and not stale.exists() and stale not in paths
    assert (out / report.figure("fig1").file).is_file() and stale.name not in (out / "report.md").read_text()


def test_stats_are_seeded_and_sound():
    x = np.random.default_rng(1).normal(0.3, 0.1, 200)
    a, b = bootstrap_ci(x), bootstrap_ci(x)
    assert a == b and a.method == "bootstrap" and a.lo < x.mean() < a.hi
    assert bootstrap_ci(np.array([1.0])) is None
    assert bootstrap_ci(np.random.default_rng(2).random(20_000)).method == "normal"
    assert holm([0.01, None, 0.04, 0.03]) == [pytest.approx(0.03), None, pytest.approx(0.06), pytest.approx(0.06)]
    res = paired_test(x, x - 0.05 + np.random.default_rng(3).normal(0, 0.01, 200))
    assert res.n == 200 and res.p < 1e-6 and res.mean_diff == pytest.approx(0.05, abs=0.01)
    assert paired_test(x, x).p is None  # all differences zero: no test, not a fake p


def test_the_ci_resamples_whole_patients_when_cases_have_them():
    rng = np.random.default_rng(4)
    level = rng.normal(0.5, 0.2, 20)  # 20 patients, 10 slices each, alike within a patient
    x = np.repeat(level, 10) + rng.normal(0, 0.01, 200)
    patients = np.repeat(np.arange(20), 10)
    by_case, by_patient = bootstrap_ci(x), bootstrap_ci(x, groups=patients)
    assert by_patient.lo < x.mean() < by_patient.hi
    assert (by_patient.hi - by_patient.lo) > 2.5 * (by_case.hi - by_case.lo)  # ~sqrt(10) wider: 20 patients, not 200
    assert bootstrap_ci(x, groups=np.arange(200)) == by_case  # one case a patient: the case bootstrap
    big = bootstrap_ci(np.repeat(level, 2000), groups=np.repeat(np.arange(20), 2000))
    assert big.method == "bootstrap"  # 20 groups: still drawn, however many slices
    assert bootstrap_ci(x, groups=np.zeros(200)) is None  # one patient: no interval


def test_cli_formats_and_the_terminal_view(cache, tmp_path):
    from typer.testing import CliRunner

    from gradfaith_tui.cli import app

    res = CliRunner().invoke(app, ["report", "--cache", str(cache), "--out", str(tmp_path / "md"), "--format", "md",
                                   "--terminal"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "md" / "report.md").is_file() and not (tmp_path / "md" / "report.html").exists()
    assert "Table I" in res.output and "Sanity check" in res.output and "FAIL" in res.output
    assert "Shortcut suspects" in res.output
    res = CliRunner().invoke(app, ["report", "--cache", str(cache), "--out", str(tmp_path / "x"), "--format", "pdf"])
    assert res.exit_code != 0


def test_report_never_imports_torch_and_loads_matplotlib_lazily():
    code = ("import sys, gradfaith_tui.report.write, gradfaith_tui.report.terminal; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_synthetic_table1_is_computed_as_evaluate_does():
    pytest.importorskip("torch")
    from gradfaith_tui.models.evaluate import confusion, table1
    from gradfaith_tui.store.synthetic_results import table1_body

    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    p[:5] = 1  # and a class never predicted elsewhere would give 0/0: both say 0
    ours, theirs = table1_body(y, p), table1(confusion(y, p))
    assert ours["confusion"] == theirs["confusion"] and ours["n"] == 200
    assert ours["macro"] == pytest.approx(theirs["macro"])
    assert all(ours["per_class"][k] == pytest.approx(v) for k, v in theirs["per_class"].items())
    empty = table1_body(np.zeros(4, int), np.zeros(4, int))
    assert empty["macro"] == pytest.approx(table1(confusion(np.zeros(4, int), np.zeros(4, int)))["macro"])


def test_table_i_in_the_terminal_keeps_model_names_whole_and_a_shared_device_below():
    from rich.console import Console

    from gradfaith_tui.report.tables import table1_rich

    macro = {k: 0.5 for k in ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")}

    def text(devices: list[str], width: int = 80) -> str:
        evals = {f"densenet-s/seed{i}": {"macro": macro, "timing": {"latency_ms": 16.5, "device": d}}
                 for i, d in enumerate(devices)}
        console = Console(width=width, record=True, color_system=None)
        console.print(table1_rich(evals))
        return console.export_text()

    shared = text(["cpu (2 threads)", "cpu (2 threads)"])  # fits 80 columns: names and numbers whole
    assert "densenet-s/seed0" in shared and "densenet-s/seed1" in shared
    assert shared.count("0.500") == 12 and shared.count("16.50") == 2
    assert "Device" not in shared and "timed on cpu (2 threads)" in shared
    mixed = text(["cpu (2 threads)", "NVIDIA H200"], width=140)
    assert "Device" in mixed and "timed on" not in mixed and "NVIDIA H200" in mixed


CUT_NUMBER = re.compile(r"[\d.,\[%-]…")  # "0.…", "12…", "[0.0…": what rich made of numbers in a narrow terminal


def test_numbers_are_never_cut_in_a_narrow_terminal(made):
    from rich.console import Console

    from gradfaith_tui.report.markdown import fmt
    from gradfaith_tui.report.tables import summary_rich, table1_rich
    from gradfaith_tui.report.terminal import print_report

    macro = {k: 0.123456 for k in ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")}
    evals = {f"vit-tiny-p8/seed{i}": {"macro": macro, "timing": {"latency_ms": 123.456, "device": "cpu"}}
             for i in range(3)}
    summary = [{"model": f"vit-tiny-p8/seed{i}", "family": "vit", "n": 1200, "accuracy": 0.5, "locacc": 0.25,
                "faith": -0.125, "consist": 0.75} for i in range(3)]
    for width in (60, 40, 24):  # 40 and 24: too narrow side by side, so each model's numbers one per line
        console = Console(width=width, record=True, color_system=None)
        console.print(table1_rich(evals))
        console.print(summary_rich(summary))
        text = console.export_text()
        assert not CUT_NUMBER.search(text), text
        assert text.count("0.123") == 18 and text.count("123.46") == 3 and text.count("-0.125") == 3, text
    console = Console(width=60, record=True, color_system=None)
    print_report(made[1], console)
    text = console.export_text()
    assert not CUT_NUMBER.search(text), text
    for t in made[1].table1:
        assert fmt(t["accuracy"]) in text and fmt(t["latency_ms"], 2) in text


def test_tables_piped_to_a_file_are_not_cut_at_80_columns(monkeypatch):
    from gradfaith_tui.cli.progress import tables_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert tables_console().width == 160  # pytest's stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert tables_console().width == 100


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a check as another user")
def test_a_cache_in_a_folder_the_user_cannot_write_is_still_read(tmp_path):
    """A shared cache owned by another user, closed cleanly (no -wal or -shm beside it): report and the explorer's
    data layer read it (SQLite cannot make the -shm file there, so it is opened immutable); flags are off."""
    import tempfile

    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="gradfaith-ro-"))
    try:
        top.chmod(0o755)
        root = build_synthetic_cache(top / "cache", 30)
        from gradfaith_tui.store.flags import FlagStore

        store = FlagStore(root)  # a colleague's flag, set while the folder was theirs to write
        store.flag(3, "shortcut")
        store.close()
        assert not (root / "audit.sqlite-wal").exists() and not (root / "audit.sqlite-shm").exists()
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        out = top / "out"
        out.mkdir()
        out.chmod(0o777)
        env = {**os.environ, "HOME": str(out), "MPLCONFIGDIR": str(out / "mpl"), "PYTHONDONTWRITEBYTECODE": "1"}
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        res = subprocess.run([*nobody, sys.executable, "-c", "from gradfaith_tui.cli import main; main()", "report",
                              "--cache", str(root), "--out", str(out / "rep"), "--format", "md"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        assert (out / "rep" / "report.md").is_file()
        probe = ("import sys; from gradfaith_tui.store.reader import CacheReader; from gradfaith_tui.tui.source import "
                 "CaseSource; r = CacheReader(sys.argv[1]); s = CaseSource(r); s.warm(); "
                 "print(r.n_cases, len(s.compute(s.view)), s.flags is None, s.flags_readonly, len(s.flags.current), "
                 "s.flags_error)")
        res = subprocess.run([*nobody, sys.executable, "-c", probe, str(root)], capture_output=True, text=True, env=env,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        # its flags are read (none here), none written: the explorer shows and exports them
        assert res.stdout.startswith("30 30 False True 1 flags disabled: cannot write") and str(root) in res.stdout
        assert not (root / "audit.sqlite-shm").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_partly_computed_cache_says_so_first(cache, tmp_path):
    r = CacheReader(cache)
    expl_id, total, names = r.columns[0].expl_id, r.n_cases * len(r.columns), [c.model.name for c in r.columns]
    r.close()
    copy = _edited_copy(cache, tmp_path / "c", ("DELETE FROM metrics WHERE expl_id = ? AND idx < 5", (expl_id,)))
    report = build(CacheReader(copy))
    per = ", ".join(f"{name} {N_CASES - 5 * (i == 0)}/{N_CASES}" for i, name in enumerate(names))
    assert report.incomplete == [f"The cache is incomplete: {total - 5:,} of {total:,} maps (cases x shown models) "
                                 f"are computed ({per} cases), so the numbers below describe part of the "
                                 f"test set; rerun `gradfaith-tui precompute` to finish it (it computes only what is "
                                 f"missing)."]
    text = markdown.render(report)
    assert text.index("**Read this first.** The cache is incomplete") < text.index("## What the audit found")
    assert not [c for c in report.caveats if "incomplete" in c]
    assert not build(CacheReader(cache)).incomplete


def test_phantoms_without_a_marker_are_not_said_to_carry_one(cache, tmp_path):
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE cases SET shortcut = 0", ()))  # phantoms, none marked
    caveat = build(CacheReader(copy)).caveats[0]
    assert caveat == "The data are synthetic phantoms (no marker planted): the findings are about the method, not about lung CT."


def test_paired_tests_count_patients_not_their_slices():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(6)
    per_patient = rng.normal(0.01, 0.03, 20)  # 20 patients x 10 near-identical slices
    a = rng.random(200)
    b = a - (np.repeat(per_patient, 10) + rng.normal(0, 0.001, 200))
    patients = np.repeat(np.arange(20), 10)
    by_case, by_patient = paired_test(a, b), paired_test(a, b, patients)
    assert by_patient.n == by_case.n == 200 and by_patient.mean_diff == by_case.mean_diff
    assert by_patient.p == pytest.approx(wilcoxon(per_patient, zero_method="wilcox").pvalue, rel=0.2)
    assert by_patient.p > 10 * by_case.p  # ten slices of one patient are not ten independent cases
    assert paired_test(a, b, np.arange(200)) == by_case


def test_a_report_that_cannot_be_written_leaves_the_one_there_whole_and_names_the_folder(cache, tmp_path, monkeypatch):
    import errno

    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.report import html

    out = tmp_path / "rep"
    _, paths = write_report(CacheReader(cache), out, "all")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(paths) <= set(before) and all(str(out) in str(p) for p in paths)
    assert ".report-" not in (out / "report.md").read_text() + (out / "report.html").read_text()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(html, "write", full)  # the figures and report.md are drawn, then the disk is full
    with pytest.raises(GradfaithError, match=rf"^--out: cannot write the report into {re.escape(str(out))} "
                                             r"\(No space left on device\); a report already there was left as it was"):
        write_report(CacheReader(cache), out, "all")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing new, nothing cut


def test_notes_say_where_the_explained_class_departs_from_the_papers(made, cache, tmp_path):
    """Predicted class as target: Faith scores another class than eq. 5's on wrong cases, and Consist leaves out a
    seed predicting otherwise than the reference seed; each count is checked against the predictions table."""
    out, report, _ = made
    con = sqlite3.connect(cache / "audit.sqlite")
    labels = dict(con.execute("SELECT idx, label FROM cases"))
    preds = {}
    for model_id, name, is_ref, idx, pred in con.execute(
            "SELECT m.model_id, m.name, m.is_ref, p.idx, p.pred FROM predictions p JOIN models m USING (model_id)"):
        preds.setdefault(name, {}).setdefault((is_ref, model_id), {})[idx] = pred
    con.close()
    wrong, differ = [], []
    for name in [c["name"] for c in report.columns]:  # the table's order
        by_model = preds[name]
        ref = next(v for (is_ref, _), v in by_model.items() if is_ref)
        wrong.append(f"{name} {sum(p != labels[i] for i, p in ref.items())}")
        others = [v for (is_ref, _), v in by_model.items() if not is_ref]
        k = sum(any(o[i] != p for o in others) for i, p in ref.items())
        if k:
            differ.append(f"{name} {k}")
    assert len(report.class_notes) == 2 and differ
    faith_note, consist_note = report.class_notes
    assert f"({', '.join(wrong)} of {N_CASES} cases)" in faith_note and "`precompute --target true`" in faith_note
    assert f"({', '.join(differ)} of {N_CASES} cases have such a seed)" in consist_note
    text = _flat((out / "report.md").read_text())
    assert all(_flat(markdown.escape_prose(n)) in text for n in report.class_notes)
    truth = _edited_copy(cache, tmp_path / "t", ("UPDATE explanations SET settings = json_set(settings, '$.target', 'true')",))
    assert build(CacheReader(truth)).class_notes == []  # every seed explains the label: one class, eq. 5's


def test_consist_from_an_older_rule_is_named_until_precompute_redoes_it(cache, tmp_path):
    first = CacheReader(cache).columns[0]
    old = _edited_copy(cache, tmp_path / "o", ("UPDATE explanations SET settings = json_remove(settings, "
                                               "'$.consist_rule') WHERE model_id = ?", (first.model.model_id,)))
    said = [c for c in build(CacheReader(old)).caveats if c.startswith("Consist of")]
    assert said == [f"Consist of {first.model.name} was computed by an older version, which also compared seeds whose "
                    "maps explain different classes; rerun `gradfaith-tui precompute` on this cache to recompute "
                    "Consist alone."]  # only the model whose Consist is old
    none = _edited_copy(old, tmp_path / "n", ("DELETE FROM metrics WHERE name = 'consist'",))
    assert not any(c.startswith("Consist") for c in build(CacheReader(none)).caveats)  # one seed: nothing to redo
    truth = _edited_copy(old, tmp_path / "t", ("UPDATE explanations SET settings = json_set(settings, '$.target', "
                                               "'true')",))
    assert not any(c.startswith("Consist") for c in build(CacheReader(truth)).caveats)  # one class: never differed


def test_the_report_opens_with_what_the_audit_found_each_with_the_number_that_bounds_it(made, cache, tmp_path):
    from gradfaith_tui.report.findings import map_stats

    report = made[1]
    r = CacheReader(cache)
    said = "\n".join(report.findings)
    for col in r.columns:  # the map statistics, recomputed here from the map files
        maps = np.load(cache / r.con.execute("SELECT map_file FROM explanations WHERE expl_id=?",
                                             (col.expl_id,)).fetchone()[0]).astype(np.float32)
        masked = [i for (i,) in r.con.execute("SELECT idx FROM cases WHERE has_mask=1")]
        import torch

        from gradfaith_tui.cam.methods import upsample

        area = (upsample(torch.from_numpy(maps[masked]), col.model.img_size) >= 0.5).float().mean().item()  # as LocAcc
        assert f"{col.model.name} " in said and f"covering {area:.0%} of the slice" in said
        assert f"{col.model.name} {np.nanmean(maps):.2f}" in said  # the maps' mean values, beside Faith
    assert [m.model for m in map_stats(r)] == [c.model.name for c in r.columns]
    assert "near or below chance" not in said  # the synthetic models classify well
    assert report.limits[0].startswith("The models see 32 px inputs")
    assert ("The CAM grids are coarser than the lesions: 2x2 on 32 px for densenet-s, resnet10t, resnet14t (one cell "
            "256 px)") in report.limits[1]
    name = r.columns[0].model.name
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE predictions SET pred = (label + 1) % 3 FROM cases "
                                                "WHERE cases.idx = predictions.idx AND model_id = ?",
                                                (r.columns[0].model.model_id,)))
    again = build(CacheReader(copy))
    assert again.findings[0].startswith(f"{name} classifies near or below chance (accuracy 0.00; chance 0.33)")
    # Consist's sentence says which seeds it compares, as pipeline.stored.write_consist picks them
    assert "Consist (IoU of each seed's binarised map with the reference seed's, on cases they predict alike)" in said
    truth = _edited_copy(cache, tmp_path / "t", ("UPDATE explanations SET settings = json_set(settings, '$.target', "
                                                 "'true')",))  # the maps' own setting, not the last run's config
    assert "reference seed's, every seed, as each explains the true class)" in "\n".join(build(CacheReader(truth)).findings)


def test_case_grids_outline_a_mask_only_where_the_case_has_one(cache, tmp_path, monkeypatch):
    """masks.npy may keep a mask the cases table no longer records (redrawn away): the figure follows the table."""
    from gradfaith_tui.report import case_grid

    masked = [i for (i,) in CacheReader(cache).con.execute("SELECT idx FROM cases WHERE has_mask=1")]
    copy = _edited_copy(cache, tmp_path / "c", ("UPDATE cases SET has_mask = 0",))
    outlined = []
    real = case_grid._show_input
    monkeypatch.setattr(case_grid, "_show_input", lambda ax, image, mask: (outlined.append(bool(mask.any())),
                                                                         real(ax, image, mask)))
    report, _ = write_report(CacheReader(copy), tmp_path / "out", "md")
    assert masked and outlined and not any(outlined)
