"""What the report's sentences say of the cache they describe: the class each shown map explains (its own
explanation's settings, not the last run's config), unchecked models, counts of model-slice pairs, notes."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gradfaith_tui.report import markdown
from gradfaith_tui.report.build import build
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Two architectures (resnet10t, resnet14t), two seeds each, 30 cases; predicted class as target."""
    return build_synthetic_cache(tmp_path_factory.mktemp("wording"), 30, models=2, seeds=2, size=32, grid=4)


def _copy(cache: Path, dest: Path, *sql: str | tuple) -> Path:
    copy = Path(shutil.copytree(cache, dest))
    con = sqlite3.connect(copy / "audit.sqlite")
    for statement in sql:
        con.execute(*((statement,) if isinstance(statement, str) else statement))
    con.commit()
    con.close()
    return copy


def _config_target(target: str) -> str:
    return f"UPDATE meta SET value = json_set(value, '$.target', '{target}') WHERE key = 'config'"


def _expl_target(target: str) -> str:
    return f"UPDATE explanations SET settings = json_set(settings, '$.target', '{target}')"


def _consist(r) -> str:
    return next(f for f in r.findings if f.startswith("Consist (IoU"))


def test_the_class_a_map_explains_is_its_own_explanations_not_the_last_runs(cache, tmp_path):
    # an older predicted-class run of the shown maps, then a later true-class run (of other models, say)
    old = build(CacheReader(_copy(cache, tmp_path / "o", _config_target("true"))))
    assert "explaining the predicted class" in old.figure("fig2").caption
    assert "on cases they predict alike" in _consist(old)
    new = build(CacheReader(_copy(cache, tmp_path / "n", _config_target("pred"), _expl_target("true"))))
    assert "explaining the true class" in new.figure("fig3").caption
    assert "every seed, as each explains the true class" in _consist(new)
    assert "predict alike" not in markdown.render(new)
    mixed = build(CacheReader(_copy(cache, tmp_path / "m", (_expl_target("true") + " WHERE model_id LIKE ?",
                                                             ("resnet14t/%",)))))
    assert ("explaining the predicted class (resnet10t) or the true class (resnet14t)"
            in mixed.figure("flagged").caption)
    assert "resnet10t " in _consist(mixed) and "(on cases they predict alike)" in _consist(mixed)
    assert "(every seed, as each explains the true class)" in _consist(mixed)


def _wrong(model_id: str) -> tuple:
    return ("UPDATE predictions SET pred = (label + 1) % 3 FROM cases WHERE cases.idx = predictions.idx "
            "AND model_id = ?", (model_id,))


def test_a_near_chance_model_is_described_by_the_class_its_maps_explain(cache, tmp_path):
    pred = build(CacheReader(_copy(cache, tmp_path / "p", _wrong("resnet10t/seed0"))))
    assert "its maps mostly explain wrong predictions" in pred.findings[0]
    true = build(CacheReader(_copy(cache, tmp_path / "t", _wrong("resnet10t/seed0"), _expl_target("true"))))
    assert true.findings[0].startswith("resnet10t classifies near or below chance")
    assert "predictions" not in true.findings[0] and "explain the true class" in true.findings[0]
    eigen = _copy(cache, tmp_path / "e", _wrong("resnet10t/seed0"), "UPDATE explanations SET method = 'eigencam'")
    r = build(CacheReader(eigen))
    assert r.method == "eigencam" and "(of no class)" in r.findings[0] and "predictions" not in r.findings[0]
    assert "of no class (eigencam maps are class-agnostic)" in r.figure("fig2").caption
    text = markdown.render(r)
    assert "predict alike" not in text and "explaining the predicted class" not in text


def test_a_model_without_a_sanity_check_is_named_not_counted_as_passing(cache, tmp_path):
    copy = _copy(cache, tmp_path / "c", "UPDATE sanity SET spearman = 0.0",
                 "DELETE FROM sanity WHERE model_id = 'resnet14t/seed0'")
    said = next(f for f in build(CacheReader(copy)).findings if f.startswith("Sanity check"))
    assert "every model passes" not in said
    assert said == ("Sanity check (maps of progressively randomised weights): resnet10t/seed0 passes. resnet14t/seed0 "
                    "was not checked (no sanity check of its maps is stored; precompute runs it unless "
                    "`--sanity-cases 0`).")
    whole = _copy(cache, tmp_path / "w", "UPDATE sanity SET spearman = 0.0")
    assert "Sanity check (maps of progressively randomised weights): every model passes." in build(
        CacheReader(whole)).findings


def _planted():
    from gradfaith_tui.store.planted import Planted, PlantedRow, RuleScore

    rows = [PlantedRow("a/seed0", 7, 1, 0.1, 0.05, 0.01, 1, 0, 7), PlantedRow("b/seed0", 7, 0, 0.0, float("nan"),
                                                                              0.01, 0, 1, 7)]
    return Planted(True, 0.011, rows, [RuleScore("border", 1, 1)])


def test_planted_counts_over_models_are_called_model_slice_pairs(cache):
    from gradfaith_tui.report.checks_md import planted_section
    from gradfaith_tui.report.findings import findings

    text = "\n".join(planted_section(_planted()))
    assert "| border | 1 of 1 | 1 of 14 |" in text  # 7 unmarked slices, two models: 14 pairs, not 14 slices
    assert "Relied-on pairs caught" in text and "counted in model-slice pairs" in text
    assert "1 relied-on model-slice pair in all" in text and "cases in all" not in text
    two = _planted()
    two.rows[0].heat_relied = two.rows[1].heat_relied = 0.0
    two.rows[1].relied = 1
    assert "the maps of a/seed0 and b/seed0 put less than twice" in "\n".join(planted_section(two))
    r = build(CacheReader(cache))
    r.planted = _planted()
    said = next(f for f in findings(r, [], 3) if f.startswith("Planted marker"))
    assert "in 1 model-slice pair (that model relied on the marker on that slice)" in said
    assert "marked slice changed" not in said


def test_a_cnn_without_rollout_maps_is_told_rollout_does_not_apply_not_to_run_it(cache, tmp_path):
    # rollout maps of resnet14t stand in for a ViT's; resnet10t has Grad-CAM maps only
    copy = _copy(cache, tmp_path / "c", "UPDATE explanations SET method = 'rollout' WHERE model_id LIKE 'resnet14t/%'",
                 "UPDATE models SET arch = 'vit_tiny_patch16_224' WHERE name = 'resnet14t'")
    said = build(CacheReader(copy, "rollout")).caveats[0]
    assert said.startswith("resnet10t has no rollout maps in this cache")
    assert "rollout follows a ViT's attention and does not apply to resnet10t, a CNN (" in said
    assert "precompute --method rollout" not in said and "`gradfaith-tui report --method gradcam`" in said
    vit = _copy(cache, tmp_path / "v", "UPDATE explanations SET method = 'rollout' WHERE model_id LIKE 'resnet14t/%'",
                "UPDATE models SET arch = 'vit_tiny_patch16_224'")  # a ViT without maps: precompute adds them
    assert "`gradfaith-tui precompute --method rollout --models resnet10t` computes them." in build(
        CacheReader(vit, "rollout")).caveats[0]


def test_a_note_without_a_flag_is_listed_as_a_note_not_as_a_flagged_case(cache, tmp_path):
    from gradfaith_tui.store.flags import FlagStore

    copy = _copy(cache, tmp_path / "c")
    store = FlagStore(copy)
    store.note(3, "just a remark")
    store.flag(4, "shortcut")
    store.close()
    r = build(CacheReader(copy))
    assert [f["idx"] for f in r.flags] == [4] and [f["note"] for f in r.notes] == ["just a remark"]
    assert r.figure("flagged").idxs == [4]
    text = markdown.render(r)
    flagged, notes = text.split("## Flagged cases", 1)[1].split("### Notes on cases without a flag")
    assert "just a remark" not in flagged and "just a remark" in notes.split("## Provenance")[0]


def test_consist_of_seeds_that_never_predict_alike_is_said_not_left_out(cache, tmp_path):
    empty = ("UPDATE metrics SET value = NULL WHERE name = 'consist' AND expl_id IN "
             "(SELECT expl_id FROM explanations WHERE model_id LIKE ?)")
    one = build(CacheReader(_copy(cache, tmp_path / "o", (empty, ("resnet14t/%",)))))
    assert [(s.model, s.n) for s in one.metric_stats if s.metric == "consist"][1] == ("resnet14t", 0)
    said = _consist(one)
    assert said.startswith("Consist (IoU of each seed's binarised map with the reference seed's, on cases they "
                           "predict alike): resnet10t 0.")
    assert said.endswith("resnet14t none (its seeds predict alike on no case, and Consist compares maps of one class).")
    both = build(CacheReader(_copy(cache, tmp_path / "b", (empty, ("%",)))))
    assert [(s.model, s.n) for s in both.metric_stats if s.metric == "consist"] == [("resnet10t", 0), ("resnet14t", 0)]
    assert "resnet10t none (" in _consist(both) and "| Consist | resnet14t | 0 |" in markdown.render(both)


def test_names_ids_and_notes_are_escaped_and_the_cache_path_is_a_plain_code_span(cache, tmp_path):
    from gradfaith_tui.store.flags import FlagStore

    copy = _copy(cache, tmp_path / "c_a*b`x", "UPDATE models SET name = 'res*net_10' WHERE name = 'resnet10t'",
                 "UPDATE cases SET case_id = 'case_*1*' WHERE idx = 3")
    store = FlagStore(copy)
    store.flag(3, "shortcut")
    store.note(3, "see `this` *now*")
    store.close()
    text = markdown.render(build(CacheReader(copy)))
    assert f"Cache ``{copy}`` ·" in text  # no backslash inside a code span, a longer fence around its backtick
    assert "Models shown: res\\*net\\_10 (ResNet-50)" in text and "| Faith | res\\*net\\_10 |" in text
    assert "| case\\_\\*1\\* |" in text and "see \\`this\\` \\*now\\*" in text
    assert "res*net" not in text.replace("res\\*net", "")


def test_terminal_limits_have_their_heading_and_numbers_read_as_english(cache):
    import io

    from rich.console import Console

    from gradfaith_tui.report.checks import Sanity
    from gradfaith_tui.report.checks_md import other_methods
    from gradfaith_tui.report.markdown import fmt
    from gradfaith_tui.report.terminal import print_report
    from gradfaith_tui.report.words import and_list, num

    r = build(CacheReader(cache))
    buf = Console(file=io.StringIO(), width=200)
    print_report(r, buf)
    term = buf.file.getvalue()
    assert r.limits and f"Limits of these models and maps:\n- {r.limits[0]}" in term
    assert fmt(-0.0001) == "0.000" and num(-0.004, 2, sign=True) == "+0.00" and fmt(-0.002) == "-0.002"
    assert and_list(["a", "b", "c"]) == "a, b and c" and and_list(["a", "b"]) == "a and b"
    two = other_methods(Sanity(other_methods=["eigencam", "gradcam++"]))[0]
    assert two == ("Checks of eigencam and gradcam++ maps are stored too: `gradfaith-tui report --method eigencam` and "
                   "`gradfaith-tui report --method gradcam++` report each.\n")


def test_units_and_limits_are_of_what_was_computed(cache, tmp_path):
    # a precompute stopped early: resnet14t registered with no map yet, resnet10t mapped on cases 0-9 only
    copy = _copy(cache, tmp_path / "c", "UPDATE models SET img_size = 64 WHERE name = 'resnet14t'",
                 "DELETE FROM metrics WHERE expl_id IN (SELECT expl_id FROM explanations WHERE model_id LIKE "
                 "'resnet14t/%') OR idx >= 10")
    r = build(CacheReader(copy))
    assert r.units.startswith("n counts slices; the 10 test slices mapped so far (of 30) come from ")
    assert r.limits[0].startswith("The models see 32 px inputs") and all("resnet14t" not in x for x in r.limits)
