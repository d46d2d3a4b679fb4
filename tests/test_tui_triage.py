"""The explorer's triage: filters, per-model and descending sorts, flags and notes in the database, undo,
export files, zoom and models screens, overlay controls and the command palette, driven by Pilot."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
from pathlib import Path

import pytest

from gradfaith_tui.store.arrays import CaseArrays, Filter
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.flags import FlagStore, export_flags
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import make_app
from gradfaith_tui.tui.render import file_name
from gradfaith_tui.tui.screens.ask import AskScreen
from gradfaith_tui.tui.screens.models import ModelsScreen
from gradfaith_tui.tui.screens.zoom import ZoomScreen
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel


@pytest.fixture()
def cache(tmp_path_factory) -> Path:
    """A fresh small cache per test: flags written by one test never leak into another."""
    return build_synthetic_cache(tmp_path_factory.mktemp("triage"), 40)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = build_synthetic_cache(tmp_path_factory.mktemp("rows"), 40)
    reader = CacheReader(root)
    out = {r.idx: r for r in reader.rows(range(reader.n_cases))}
    reader.close()
    return out


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def db_flags(root: Path) -> list[tuple]:
    con = sqlite3.connect(root / "audit.sqlite")
    out = con.execute("SELECT idx, category, note, undone FROM flags ORDER BY flag_id").fetchall()
    con.close()
    return out


def order_of(app) -> list[int]:
    return [int(i) for i in app.query_one(CaseTable).source.order]


def run(coro_fn, cache, size=(120, 40), **kwargs):
    async def main():
        app = make_app(cache, **kwargs)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await coro_fn(app, pilot)
        return app
    return asyncio.run(main())


def test_flags_notes_undo_persist_and_export(cache, tmp_path):
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        first = table.source.idx_at(0)
        await pilot.press("1")  # unfaithful
        await settle(pilot)
        assert db_flags(cache) == [(first, "unfaithful", "", 0)]  # committed at once
        assert "U" in "".join(s.text for s in table.render_line(1))
        assert "unfaithful" in str(app.query_one("#case-title").content)

        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*"heat on ribs", "enter")
        await settle(pilot)
        assert db_flags(cache)[-1] == (first, "unfaithful", "heat on ribs", 0)

        await pilot.press("j", "2")  # shortcut on the second case
        await settle(pilot)
        second = table.source.idx_at(1)
        assert app.source.flags.get(second).category == "shortcut"

        await pilot.press("z")  # undo the shortcut flag
        await settle(pilot)
        assert app.source.flags.get(second) is None
        active = [r for r in db_flags(cache) if r[3] == 0]
        assert active == [(first, "unfaithful", "heat on ribs", 0)]

        await pilot.press("4", "k", "0")  # flag the second fine, then unflag the first: its note stays
        await settle(pilot)
        assert {r[0]: r[1:3] for r in db_flags(cache) if r[3] == 0} == {second: ("fine", ""),
                                                                          first: ("note", "heat on ribs")}
        await pilot.press("0")  # nothing left to unflag: the note is only removed by emptying it
        await settle(pilot)
        assert app.source.flags.get(first).note == "heat on ribs"
        await pilot.press("z")  # the flag comes back, note and all
        await settle(pilot)
        assert app.source.flags.get(first).category == "unfaithful"
        assert app.source.flags.get(first).note == "heat on ribs"

        await pilot.press("x")
        await settle(pilot)
        csv_path, json_path = app.last_export
        records = json.loads(json_path.read_text())
        assert {r["case_id"]: r["category"] for r in records} == {
            app.source.row_at(0).case_id: "unfaithful", app.source.row_at(1).case_id: "fine"}
        rec = next(r for r in records if r["category"] == "unfaithful")
        assert rec["note"] == "heat on ribs" and len(rec["models"]) == 5
        assert all("faith" in m and "pred" in m for m in rec["models"].values())
        with csv_path.open() as fh:
            lines = list(csv.DictReader(fh))
        assert len(lines) == 2 * 5 and {ln["category"] for ln in lines} == {"unfaithful", "fine"}
        assert all(ln["faith"] != "" for ln in lines)

    run(body, cache, export_dir=tmp_path / "out")
    # A new session (after a crash, say) sees the flags, and can undo the newest one.
    store = FlagStore(cache)
    assert {f.category for f in store.current.values()} == {"unfaithful", "fine"}
    store.close()

    async def reopen(app, pilot):
        assert len(app.source.flags.current) == 2
        await pilot.press("z")
        await settle(pilot)
        assert len(app.source.flags.current) == 1
    run(reopen, cache)


def test_filters_and_search(cache, rows):
    drop_optional_tables(cache)  # the last step checks a cache without suspect data
    async def body(app, pilot):
        n = len(order_of(app))
        await pilot.press("t")  # true Normal
        await settle(pilot)
        assert order_of(app) and all(rows[i].label == 0 for i in order_of(app))
        assert "true Normal" in str(app.query_one("#status").content)
        await pilot.press("t", "t")  # Malignant
        await settle(pilot)
        assert all(rows[i].label == 2 for i in order_of(app))
        await pilot.press("v")  # any model wrong
        await settle(pilot)
        assert order_of(app) and all(rows[i].n_wrong() > 0 for i in order_of(app))
        await pilot.press("escape")
        await settle(pilot)
        assert len(order_of(app)) == n

        await pilot.press("p")  # any model predicts Normal
        await settle(pilot)
        assert all(any(r.pred == 0 for r in rows[i].results.values()) for i in order_of(app))
        await pilot.press("m")  # the filter now uses M1 alone
        await settle(pilot)
        m1 = app.source.columns[0].model.name
        assert order_of(app) and all(rows[i].results[m1].pred == 0 for i in order_of(app))
        await pilot.press("escape", "v", "v")  # right (by M1)
        await settle(pilot)
        assert all(rows[i].results[m1].pred == rows[i].label for i in order_of(app))
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("1", "u")  # flag the current case, then show flagged cases only
        await settle(pilot)
        assert order_of(app) == list(app.source.flags.current)

        await pilot.press("escape", "slash")
        await settle(pilot)
        await pilot.press(*"case (1", "enter")
        await settle(pilot)
        ids = [rows[i].case_id for i in order_of(app)]
        assert ids and all("case (1" in c for c in ids)
        assert len(ids) == sum("case (1" in r.case_id for r in rows.values())

        await pilot.press("s")  # no suspects in this cache: shows none
        await settle(pilot)
        assert order_of(app) == []
        assert "no case matches" in str(app.query_one("#status").content)

    run(body, cache)


def test_per_model_and_descending_sorts(cache, rows):
    async def body(app, pilot):
        await pilot.press("m", "m", "f")  # M2's Faith
        await settle(pilot)
        m2 = app.source.columns[1].model.name
        vals = [rows[i].results[m2].metrics["faith"] for i in order_of(app)]
        assert vals == sorted(vals)
        assert f"({m2})" in str(app.query_one("#status").content)
        await pilot.press("r")
        await settle(pilot)
        vals = [rows[i].results[m2].metrics["faith"] for i in order_of(app)]
        assert vals == sorted(vals, reverse=True)
        await pilot.press("c")
        await settle(pilot)
        vals = [rows[i].results[m2].metrics["consist"] for i in order_of(app)]
        assert vals == sorted(vals)
        await pilot.press("m", "m", "m", "m", "i")  # back to the worst model; IoU
        await settle(pilot)
        vals = [rows[i].worst("iou") for i in order_of(app)]
        have = [v for v in vals if v is not None]
        assert have == sorted(have) and all(v is None for v in vals[len(have):])
        await pilot.press("n", "r")
        await settle(pilot)
        ids = [rows[i].case_id for i in order_of(app)]
        number = lambda cid: (cid.split(" (")[0], int(cid.split("(")[1].split(")")[0]))  # noqa: E731
        assert ids == sorted(ids, key=number, reverse=True)  # numbers as numbers: (12) after (9)

    run(body, cache)


def test_zoom_models_overlay_palette(cache):
    async def body(app, pilot):
        await pilot.press("enter")
        await settle(pilot)
        zoom = app.screen
        assert isinstance(zoom, ZoomScreen)
        title = str(zoom.query_one("#zoom-title").content)
        assert file_name(app.source.row_at(0).case_id) in title
        strips = zoom.query_one("#zoom-tiles").strips
        text = "\n".join("".join(s.text for s in st) for st in strips)
        assert "M1 resnet10t" in text and "seed 0 (1/2)" in text and "Faith" in text
        await pilot.press("s")  # the other seed
        await settle(pilot)
        text = "\n".join("".join(s.text for s in st) for st in zoom.query_one("#zoom-tiles").strips)
        assert "seed 1 (2/2)" in text
        await pilot.press("right", "down")
        await settle(pilot)
        assert zoom.model == 1 and zoom.position == 1
        await pilot.press("o")  # app-level overlay keys work here too
        await settle(pilot)
        assert "outline off" in str(zoom.query_one("#zoom-title").content)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ZoomScreen)

        panel = app.query_one(HeatmapPanel)
        await pilot.press("C", "b", "left_square_bracket")
        await settle(pilot)
        assert panel.overlay.colormap == "hot" and not panel.overlay.alone and panel.overlay.opacity == 0.4
        await pilot.press("b")
        await settle(pilot)
        assert panel.overlay.alone

        await pilot.press("M")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        await settle(pilot)
        assert app.screen.query_one("#models-body").content is not None
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Sort by Consist", "enter")
        await settle(pilot)
        assert app.view.key == "consist"

    run(body, cache)


def drop_optional_tables(root: Path) -> None:
    """Caches written before the engine had suspects and sanity checks lack those tables."""
    con = sqlite3.connect(root / "audit.sqlite")
    con.execute("DROP TABLE IF EXISTS suspects")
    con.execute("DROP TABLE IF EXISTS sanity")
    con.commit()
    con.close()


async def models_screen_text(app, pilot, width: int) -> str:
    """The models screen (M) as plain text, laid out at width columns."""
    from rich.console import Console

    await pilot.press("M")
    await settle(pilot)
    console = Console(width=width, record=True, color_system=None)
    console.print(app.screen.query_one("#models-body").content)
    return console.export_text()


def test_models_screen_contents(cache):
    drop_optional_tables(cache)

    async def body(app, pilot):
        text = await models_screen_text(app, pilot, 160)
        assert "Table I" in text and "Confusion" in text and "resnet10t" in text
        assert "no suspect data in this cache" in text and "no sanity-check data" in text
        assert any(ch in text for ch in "▁▂▃▄▅▆▇█")

    run(body, cache)


def test_models_screen_marks_a_model_trained_on_another_split(cache):
    con = sqlite3.connect(cache / "audit.sqlite")
    model_id = con.execute("SELECT model_id FROM models WHERE is_ref = 1 ORDER BY model_id LIMIT 1").fetchone()[0]
    con.execute("UPDATE models SET trained_elsewhere = 'on another split of these data (split a, now b)' "
                "WHERE model_id = ?", (model_id,))
    con.commit()
    con.close()

    async def body(app, pilot):
        text = await models_screen_text(app, pilot, 200)
        label = app.source.model_label(model_id)
        assert f"{label} !" in text  # its Table I row
        assert (f"! {label}: trained on another split of these data (split a, now b); used with --force, so its test "
                "metrics may include training cases") in text
        assert text.count(" !") == 1

    run(body, cache)


def test_models_screen_gives_each_sanity_check_a_verdict(cache):
    async def body(app, pilot):
        text = await models_screen_text(app, pilot, 160)
        lines = text[text.index("Sanity checks"):].splitlines()
        verdicts = [ln for ln in lines if ln.strip().startswith("M") and "gradcam" in ln]
        assert len(verdicts) == 5 and all(("pass" in ln) != ("FAIL" in ln) for ln in verdicts)
        assert sum("FAIL" in ln for ln in verdicts) == 1  # the synthetic cache plants one failing model
        assert "M1 resnet10t" in verdicts[0]  # named as the table names it, not a cut model id

    run(body, cache)


def test_models_screen_shows_a_metric_no_case_has_as_absent_not_nan(cache):
    con = sqlite3.connect(cache / "audit.sqlite")  # real IQ-OTH/NCCD: no masks, so no LocAcc anywhere
    con.execute("UPDATE metrics SET value = NULL WHERE name = 'locacc'")
    con.commit()
    con.close()

    async def body(app, pilot):
        text = await models_screen_text(app, pilot, 200)
        assert "nan" not in text.lower() and "40 n/a" in text
        row = next(line for line in text.splitlines() if line.strip().startswith("M1 ") and "n/a" in line)
        assert "– 40 n/a" in row  # the mean is a dash, then the count of cases without a value

    run(body, cache)


def test_suspects_shown_in_words(cache):
    drop_optional_tables(cache)  # exactly one suspect, planted here
    con = sqlite3.connect(cache / "audit.sqlite")
    con.execute("CREATE TABLE IF NOT EXISTS suspects (expl_id INTEGER, model_id TEXT, idx INTEGER, rule TEXT, "
                "value REAL, reason TEXT)")
    con.execute("INSERT INTO suspects (expl_id, model_id, idx, rule, value, reason) VALUES (1, 'resnet10t/seed0', 0, "
                "'outside_body_heat', 0.71, '71% of heat outside the body')")
    con.execute("INSERT INTO suspects (expl_id, model_id, idx, rule, value, reason) VALUES (2, 'resnet10t/seed1', 0, "
                "'border_heat', 0.45, '45% of heat in the border band')")  # another seed: named by its column
    con.commit()
    con.close()

    async def body(app, pilot):
        await pilot.press("s")
        await settle(pilot)
        assert order_of(app) == [0]
        table = app.query_one(CaseTable)
        assert "⚠" in "".join(s.text for s in table.render_line(1))
        panel = app.query_one(HeatmapPanel)
        text = "\n".join("".join(s.text for s in st) for st in panel.query_one("#tiles").strips)
        assert "⚠ 71%" in text  # on M1's tile
        assert "⚠ M1 resnet10t: 71% of heat outside the body" in text  # in words above the tiles
        assert "⚠ M1 resnet10t seed 1: 45% of heat" in text and "resnet10t/seed1" not in text

        await pilot.press("enter")  # zoom: only the reasons of the seed on screen
        await settle(pilot)
        zoom = app.screen
        shown = lambda: "\n".join("".join(s.text for s in st) for st in zoom.query_one("#zoom-tiles").strips)  # noqa: E731
        assert "71% of heat outside the body" in shown() and "45% of heat" not in shown()
        await pilot.press("s")
        await settle(pilot)
        assert "seed 1" in shown() and "45% of heat" in shown() and "71% of heat" not in shown()
        await pilot.press("1", "escape", "x")  # flag it from the zoom, then export: the reasons go along
        await settle(pilot)
        csv_path, json_path = app.last_export
        rec = json.loads(json_path.read_text())[0]
        assert [s["reason"] for s in rec["suspects"]] == ["71% of heat outside the body", "45% of heat in the border band"]
        with csv_path.open() as fh:
            by_model = {ln["model"]: ln["suspects"] for ln in csv.DictReader(fh)}
        assert by_model["resnet10t"] == "71% of heat outside the body; 45% of heat in the border band (seed1)"
        assert by_model["resnet14t"] == ""

    run(body, cache, export_dir=cache / "out")


def test_arrays_view_speed_shape(cache):
    drop_optional_tables(cache)
    reader = CacheReader(cache)
    a = CaseArrays(reader.con, reader.columns, reader.n_cases)
    assert a.order("faith").shape == (40,) and a.view("faith", -1, False, Filter(true_class=1)).size > 0
    assert not a.has_suspects
    counts, _, missing = a.histogram("locacc", 0)
    assert counts.sum() + missing == 40 and missing > 0
    reader.close()


def test_case_ids_sort_with_numbers_as_numbers():
    from gradfaith_tui.store.arrays import natural_order

    ids = ["Normal cases/Normal case (10).jpg", "Normal cases/Normal case (2).jpg", "Bengin cases/Bengin case (1).jpg",
           "Normal cases/Normal case (1).jpg", "Normal cases/Normal case (100).jpg"]
    order = natural_order(list(enumerate(ids)))
    assert [ids[i].split("/")[1] for i in order] == ["Bengin case (1).jpg", "Normal case (1).jpg", "Normal case (2).jpg",
                                                     "Normal case (10).jpg", "Normal case (100).jpg"]


def test_a_cache_that_refuses_flag_writes_turns_flagging_off_without_ending_the_explorer(cache, tmp_path):
    """A shared cache folder this user cannot write: the FlagStore opens (reading works), its first write fails.
    The machine runs as root, so the folder's permissions are simulated by a read-only connection."""
    seen: list[str] = []

    async def body(app, pilot):
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        app.source.flags.con.close()
        app.source.flags.con = sqlite3.connect(f"file:{cache / 'audit.sqlite'}?mode=ro", uri=True,
                                               check_same_thread=False, isolation_level=None)
        await pilot.press("1")
        await settle(pilot)
        assert app.is_running and app.source.flags.current == {}
        assert seen[-1].startswith(f"flags disabled: cannot write {cache / 'audit.sqlite'} (") and "\n" not in seen[-1]
        for keys in (("2",), ("z",), ("0",), ("e",)):  # no more writes are tried, each says why in one line
            await pilot.press(*keys)
            await settle(pilot)
            assert app.is_running and not isinstance(app.screen, AskScreen)
            assert seen[-1].startswith("flags disabled: cannot write")
        await pilot.press("j")  # browsing goes on
        await settle(pilot)
        assert app.query_one(CaseTable).cursor == 1

    run(body, cache)
    assert db_flags(cache) == []


def test_an_export_folder_that_cannot_be_made_is_one_line_naming_it(cache, tmp_path):
    blocked = tmp_path / "exports"
    blocked.write_text("a file where the export folder should be")
    seen: list[str] = []

    async def body(app, pilot):
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        await pilot.press("1", "x")
        await settle(pilot)
        assert app.is_running and getattr(app, "last_export", None) is None
        assert seen[-1].startswith(f"export failed: {blocked}") and "\n" not in seen[-1]
        assert db_flags(cache)[-1][1] == "unfaithful"  # the flag itself is kept

    run(body, cache, export_dir=blocked)


def test_an_export_on_a_full_disk_keeps_the_last_export_whole_and_says_so_in_one_line(cache, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "exports"
    store = FlagStore(cache)
    store.flag(2, "shortcut")
    csv_path, json_path = export_flags(store, CacheReader(cache), out)
    before = (csv_path.read_bytes(), json_path.read_bytes())
    store.flag(5, "unfaithful")
    real_open = Path.open

    def full(self, mode="r", *a, **k):  # the CSV's writer runs out of space half-way
        f = real_open(self, mode, *a, **k)
        if "w" in mode and self.name.startswith("flagged.csv"):
            f.write("case_id,idx")
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return f

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(OSError) as caught:
        export_flags(store, CacheReader(cache), out)
    monkeypatch.setattr(Path, "open", real_open)
    assert caught.value.filename == str(csv_path) and "export again" in caught.value.strerror
    assert csv_path.read_bytes() == before[0]  # the last export, whole
    assert sorted(p.name for p in out.iterdir()) == ["flagged.csv", "flagged.json"]  # no partial file left
    store.close()


def test_long_digit_runs_and_leading_zeros_sort_as_numbers_and_deterministically():
    from gradfaith_tui.store.arrays import natural_order

    ids = ["u1.2.840.123456789012345", "u1.2.840.99", "a1", "a01", "a10"]
    for rows in (list(enumerate(ids)), list(reversed(list(enumerate(ids))))):  # the order SQLite hands them in
        assert [ids[i] for i in natural_order(rows)] == ["a01", "a1", "a10", "u1.2.840.99", "u1.2.840.123456789012345"]


def test_a_seeds_map_file_removed_meanwhile_is_a_notice_in_zoom_not_a_crash(cache):
    notices = []

    async def body(app, pilot):
        app.notify = lambda message, **kw: notices.append(message)
        await pilot.press("enter")
        await settle(pilot)
        for f in (cache / "maps").glob("*.npy"):
            f.unlink()  # as a user cleaning up, or a damaged disk, while the explorer is open
        await pilot.press("s")  # the other seed: its map file is read now
        await settle(pilot)
        assert isinstance(app.screen, ZoomScreen)
        assert any("cannot show this map:" in n and "map file missing or damaged" in n for n in notices), notices

    run(body, cache)


def test_models_screen_counts_faith_below_zero_apart_from_its_bins(cache):
    con = sqlite3.connect(cache / "audit.sqlite")
    expl = con.execute("SELECT expl_id FROM explanations e JOIN models m USING (model_id) WHERE m.is_ref = 1 "
                       "ORDER BY m.rowid LIMIT 1").fetchone()[0]
    con.execute("UPDATE metrics SET value = -0.5 WHERE expl_id = ? AND name = 'faith' AND idx < 7", (expl,))
    below = con.execute("SELECT COUNT(*) FROM metrics WHERE expl_id = ? AND name = 'faith' AND value < 0",
                        (expl,)).fetchone()[0]
    con.commit()
    con.close()

    async def body(app, pilot):
        text = await models_screen_text(app, pilot, 200)
        hist = text[text.index("Distributions"):].splitlines()
        row = next(line for line in hist if line.strip().startswith("M1 "))
        assert f" {below} <0" in row and below >= 7  # the worst cases are not hidden in the lowest bin

    run(body, cache)


def test_two_explorers_on_one_cache_keep_one_flag_per_case(cache):
    """Two FlagStores (two explorers) on one cache: each change supersedes whatever the case has in the database,
    each sees the other's on refresh, and an undo the other has overtaken is skipped, never reviving a second flag."""
    a, b = FlagStore(cache), FlagStore(cache)
    a.flag(1, "unfaithful")
    b.flag(1, "shortcut")  # B never saw A's flag
    db = sqlite3.connect(cache / "audit.sqlite")
    active = lambda idx: [r[0] for r in db.execute("SELECT category FROM flags WHERE idx=? AND undone=0", (idx,))]  # noqa: E731
    assert active(1) == ["shortcut"]
    assert a.refresh() and a.get(1).category == "shortcut" and not a.refresh()
    a.clear(1)
    assert active(1) == [] and b.refresh() and b.get(1) is None
    b.note(2, "heat on the table")
    a.flag(2, "mislocalised")  # keeps B's note: read from the database, not from A's memory
    assert a.get(2).note == "heat on the table" and active(2) == ["mislocalised"]
    a.flag(3, "unfaithful")
    b.flag(3, "fine")
    # A's change to case 3 is overtaken by B's: undo skips it and undoes A's change to case 2, reviving B's note
    assert a.undo() == 2 and active(3) == ["fine"] and active(2) == ["note"] and a.get(2).note == "heat on the table"
    assert all(len(active(i)) <= 1 for i in range(10))
    a.close()
    b.close()
    reopened = FlagStore(cache)
    assert {i: f.category for i, f in reopened.current.items()} == {i: c[0] for i in range(10) if (c := active(i))}
    reopened.close()
    db.close()


def test_a_busy_database_refuses_one_flag_and_leaves_flagging_on(cache):
    """Another program holding the database past the wait: that change is refused with a warning; the next works."""
    seen: list[str] = []

    async def body(app, pilot):
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        app.source.flags.con.execute("PRAGMA busy_timeout=50")  # the 5 s wait, shortened for the test
        other = sqlite3.connect(cache / "audit.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        await pilot.press("1")
        await settle(pilot)
        assert seen[-1].startswith(f"not saved: {cache / 'audit.sqlite'} is busy") and not app.source.flags_readonly
        assert app.source.flags.get(app.source.idx_at(0)) is None
        other.execute("COMMIT")
        other.close()
        await pilot.press("1")
        await settle(pilot)
        assert app.source.flags.get(app.source.idx_at(0)).category == "unfaithful"

    run(body, cache)
    assert len(db_flags(cache)) == 1


def test_a_flag_set_by_another_explorer_shows_after_the_next_poll(cache):
    async def body(app, pilot):
        idx = app.source.idx_at(0)
        other = FlagStore(cache)
        other.flag(idx, "shortcut")
        other.close()
        app._poll_cache()
        await settle(pilot)
        row = "".join(s.text for s in app.query_one(CaseTable).render_line(1))
        assert app.source.flags.get(idx).category == "shortcut" and " S" in row
        assert "1 flagged" in str(app.query_one("#status").content)

    run(body, cache)


def test_a_note_alone_from_the_table_records_the_map_in_view(cache):
    async def body(app, pilot):
        first = app.source.idx_at(0)
        await pilot.press("e", *"rim", "enter")  # across every model
        await settle(pilot)
        await pilot.press("j", "m")  # one model chosen (the cursor keeps its case)
        await settle(pilot)
        second = app._current_idx()
        await pilot.press("e", *"M1 too", "enter")
        await settle(pilot)
        assert first != second and app.source.flags.get(first).viewed == ""
        assert app.source.flags.get(second).viewed == "resnet10t/seed0 (gradcam)"

    run(body, cache)


def _with_a_second_method(root: Path, method: str) -> Path:
    """Every gradcam explanation copied, maps and metrics, as if precompute had also run `--method method`."""
    from gradfaith_tui.store.writer import CacheWriter

    writer = CacheWriter.__new__(CacheWriter)  # reopen as precompute does, without its data checks
    writer.root, writer.con, writer._maps = root, sqlite3.connect(root / "audit.sqlite"), {}
    writer.con.row_factory = sqlite3.Row
    for e in writer.con.execute("SELECT * FROM explanations WHERE method='gradcam'").fetchall():
        new = writer.explanation(e["model_id"], method, e["layer"], f"{e['key']}+{method}", (e["map_h"], e["map_w"]),
                                 json.loads(e["settings"]))
        writer._map(new)[:] = writer.read_maps(e["expl_id"])
        writer._map(new).flush()
        with writer.con:
            writer.con.execute("INSERT INTO metrics SELECT ?, idx, name, value FROM metrics WHERE expl_id=?",
                               (new, e["expl_id"]))
    writer.con.close()
    return root


def test_a_flag_names_the_method_of_the_map_in_view(cache):
    """The table and the zoom recorded a map of the method the explorer shows as the bare model id, which reads
    as the cache's default method: a gradcam++ flag was taken for a gradcam one."""
    async def body(app, pilot):
        await pilot.press("m")  # one model chosen in the table
        await settle(pilot)
        first = app._current_idx()
        await pilot.press("1")
        await settle(pilot)
        assert app.source.flags.get(first).viewed == "resnet10t/seed0 (gradcam++)"
        await pilot.press("j", "enter")  # the zoom: the method shown, then the other one (m)
        await settle(pilot)
        second = app.screen.idx
        await pilot.press("2")
        await settle(pilot)
        assert app.source.flags.get(second).viewed == "resnet10t/seed0 (gradcam++)"
        await pilot.press("m", "j", "3")  # the next case on its gradcam map
        await settle(pilot)
        third = app.screen.idx
        assert app.source.flags.get(third).viewed == "resnet10t/seed0 (gradcam)"
        zoom_text = "".join(seg.text for strip in app.screen.query_one("#zoom-tiles").strips for seg in strip)
        assert "⚑ mislocalised on M1 resnet10t (gradcam)" in zoom_text  # not the method shown: named

    run(body, CacheReader(_with_a_second_method(cache, "gradcam++"), "gradcam++"))  # explore --method gradcam++


def test_a_flag_records_the_map_in_view_and_the_export_and_panel_name_it(cache, tmp_path):
    async def body(app, pilot):
        await pilot.press("1")  # the table across models: no one map
        await settle(pilot)
        first = app.source.idx_at(0)
        assert app.source.flags.get(first).viewed == ""  # recorded: across every model
        await pilot.press("j", "enter", "s")  # the zoom on M1's second seed
        await settle(pilot)
        second = app.source.idx_at(1)
        await pilot.press("2")
        await settle(pilot)
        assert app.source.flags.get(second).viewed == "resnet10t/seed1 (gradcam)"
        zoom_text = "".join(seg.text for strip in app.screen.query_one("#zoom-tiles").strips for seg in strip)
        assert "⚑ shortcut on M1 resnet10t seed 1" in zoom_text
        await pilot.press("escape", "j", "m")  # one model chosen in the table: its reference seed's map
        await settle(pilot)
        third = app.source.idx_at(app.query_one(CaseTable).cursor)
        await pilot.press("3")
        await settle(pilot)
        assert app.source.flags.get(third).viewed == "resnet10t/seed0 (gradcam)"
        assert "⚑ mislocalised on M1 resnet10t" in str(app.query_one(HeatmapPanel).query_one("#case-title").content)
        app.source.flags.note(third, "the lesion is missed")  # a note from the table keeps the flag's map
        assert app.source.flags.get(third).viewed == "resnet10t/seed0 (gradcam)"
        app.source.flags.note(first, "M2 too", viewed="vit-tiny-p8/seed0")  # so does one from a zoom
        assert app.source.flags.get(first).viewed == ""
        fourth = app.source.idx_at(3)
        app.source.flags.note(fourth, "odd rim", viewed="vit-tiny-p8/seed1")  # a note alone keeps its own map
        assert app.source.flags.get(fourth).viewed == "vit-tiny-p8/seed1"
        app.source.flags.note(fourth, "odd rim, both seeds")
        assert app.source.flags.get(fourth).viewed == "vit-tiny-p8/seed1"
        app.source.flags.note(fourth, "")  # removed: the export below lists the three flags
        csv_path, json_path = export_flags(app.source.flags, app.reader, tmp_path / "exp")
        views = {r["idx"]: r["viewed"] for r in json.loads(json_path.read_text())}
        assert views == {first: "", second: "resnet10t/seed1 (gradcam)", third: "resnet10t/seed0 (gradcam)"}
        assert ({row["viewed"] for row in csv.DictReader(csv_path.open())}
                == {"", "resnet10t/seed1 (gradcam)", "resnet10t/seed0 (gradcam)"})

    run(body, cache)
    from gradfaith_tui.report.build import build

    report = build(CacheReader(cache))
    assert sorted(f["viewed"] for f in report.flags) == ["", "resnet10t/seed0 (gradcam)", "resnet10t/seed1 (gradcam)"]
    from gradfaith_tui.report import markdown

    text = markdown.render(report)
    assert "| all models |" in text and "| resnet10t/seed1 (gradcam) |" in text


def test_flags_of_a_cache_from_before_the_map_in_view_are_kept_and_extended(tmp_path, monkeypatch):
    root = build_synthetic_cache(tmp_path / "old", 12, models=2, seeds=1)
    con = sqlite3.connect(root / "audit.sqlite")
    con.execute("DROP TABLE IF EXISTS flags")
    con.execute("CREATE TABLE flags (flag_id INTEGER PRIMARY KEY, idx INTEGER NOT NULL, category TEXT NOT NULL, "
                "note TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO flags (idx, category, note, created) VALUES (3, 'fine', 'kept', '2026-01-01')")
    con.commit()
    con.close()
    real = sqlite3.connect
    with monkeypatch.context() as m:  # a folder this user cannot write (root runs the tests): a read-only connection
        m.setattr(sqlite3, "connect", lambda *a, **k: real(f"file:{root / 'audit.sqlite'}?mode=ro", uri=True,
                                                          check_same_thread=False, isolation_level=None))
        store = FlagStore(root)
    assert store.get(3).note == "kept" and store.get(3).viewed is None and not store._viewed
    store = FlagStore(root)  # writable: the column is added, the old flag kept
    assert store._viewed and store.get(3).note == "kept"
    store.flag(4, "unfaithful", viewed="m/seed0")
    assert FlagStore(root).get(4).viewed == "m/seed0"


def test_undo_never_reverts_another_explorers_work_and_a_note_written_meanwhile_is_named(cache):
    a, b = FlagStore(cache), FlagStore(cache)
    a.flag(5, "unfaithful")
    b.flag(5, "shortcut")  # overtakes A's only change
    b.flag(8, "fine")
    assert a.next_undo_idx() is None and a.undo() is None and a.overtaken  # asked twice (the zoom does): still none
    assert a.undo() is None  # and never B's flags, the newest in the database
    c = FlagStore(cache)  # a session that has changed nothing: the newest flag set before it opened
    b.flag(9, "fine")  # set while C is open: not C's to undo
    assert c.undo() == 8 and c.get(8) is None and FlagStore(cache).get(9).category == "fine"
    assert FlagStore(cache).get(5).category == "shortcut"
    for store in (a, b, c):
        store.close()
    seen: list[str] = []

    async def body(app, pilot):
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        idx = app.source.idx_at(0)
        other = FlagStore(cache)
        other.note(idx, "first thoughts")  # before the dialog opens: it starts from this, not from memory
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, AskScreen) and app.screen.query_one("#ask-input").value == "first thoughts"
        other.note(idx, "from the other explorer")  # while the dialog is open
        other.close()
        app.screen.query_one("#ask-input").value = "mine"
        await pilot.press("enter")
        await settle(pilot)
        assert app.source.flags.get(idx).note == "mine"
        assert seen[-1] == "note saved; another explorer had meanwhile written: from the other explorer"

    run(body, cache)


def test_undo_after_a_restart_brings_back_only_the_flag_that_one_replaced(cache):
    a = FlagStore(cache)
    a.flag(1, "unfaithful")
    a.flag(1, "shortcut")  # replaces the first
    a.clear(1)  # no flag on case 1
    a.flag(1, "mislocalised")  # replaces nothing
    a.flag(2, "unfaithful")
    a.flag(2, "fine")  # replaces the one before
    a.close()
    b = FlagStore(cache)  # a restart: undo takes back the newest flags set before it opened
    assert b.undo() == 2 and b.get(2).category == "unfaithful"  # the flag "fine" replaced comes back
    b.close()
    c = FlagStore(cache)
    assert c.undo() == 2 and c.get(2) is None
    assert c.undo() is None  # one earlier flag a session: with no redo, z pressed on would eat older work
    c.close()
    d = FlagStore(cache)
    assert d.undo() == 1 and d.get(1) is None  # not the long-cleared "unfaithful"
    d.close()
