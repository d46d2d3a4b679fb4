"""Every explorer binding that the other Pilot tests never press, each with a concrete result:
paging, home/end, the wrong-count sort, more heat, ctrl+z, the third flag, and the zoom screen's keys."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import make_app
from gradfaith_tui.tui.screens.zoom import ZoomScreen
from gradfaith_tui.tui.widgets.case_table import CaseTable
from gradfaith_tui.tui.widgets.heatmaps import HeatmapPanel


@pytest.fixture()
def cache(tmp_path) -> Path:
    return build_synthetic_cache(tmp_path / "keys", 60)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def run(body, cache, size=(120, 40)):
    async def main():
        app = make_app(cache)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(app, pilot)
    asyncio.run(main())


def test_paging_home_end(cache):
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        page = table.scrollable_content_region.height - 2  # one page: the visible rows less two
        assert 5 < page < 60
        await pilot.press("pagedown")  # a pager: the first press from the top moves the view by a page too
        await settle(pilot)
        assert table.cursor == page and table.scroll_y == min(page, 60 - (page + 1))
        await pilot.press("home")
        await settle(pilot)
        for key, expected in (("pagedown", page), ("ctrl+d", 2 * page), ("pageup", page), ("ctrl+u", 0),
                              ("ctrl+u", 0), ("end", 59), ("ctrl+d", 59), ("home", 0)):
            await pilot.press(key)
            await settle(pilot)
            assert table.cursor == expected, key
            assert app.query_one(HeatmapPanel).case_idx == table.source.idx_at(expected)
        await pilot.press("pagedown", "pagedown")  # past the first screen: the table scrolls with the cursor
        await settle(pilot)
        assert table.scroll_y > 0 and f"case {2 * page + 1}/60" in str(app.query_one("#status").content)
        assert "".join(s.text for s in table.render_line(int(2 * page - table.scroll_y) + 1)).startswith("▶")

    run(body, cache, size=(100, 30))


def test_wrong_sort_heat_opacity_ctrl_z_third_flag(cache):
    reader = CacheReader(cache)
    rows = {r.idx: r for r in reader.rows(range(reader.n_cases))}
    reader.close()

    async def body(app, pilot):
        table, panel = app.query_one(CaseTable), app.query_one(HeatmapPanel)
        await pilot.press("w")
        await settle(pilot)
        wrong = [rows[int(i)].n_wrong() for i in table.source.order]
        assert wrong == sorted(wrong, reverse=True) and wrong[0] > wrong[-1]
        assert "most models wrong" in str(app.query_one("#status").content)

        before = [s.text for s in panel.query_one("#tiles").strips]
        await pilot.press("right_square_bracket")  # more heat over the slice
        await settle(pilot)
        assert panel.overlay.opacity == 0.6 and app.overlay.opacity == 0.6
        await pilot.press(*["right_square_bracket"] * 6)  # capped at 1.0
        await settle(pilot)
        assert panel.overlay.opacity == 1.0
        assert [s.text for s in panel.query_one("#tiles").strips] == before  # same cells, other colours
        assert panel._rendered_idx == panel.case_idx

        idx = table.source.idx_at(0)
        await pilot.press("3")
        await settle(pilot)
        assert app.source.flags.get(idx).category == "mislocalised"
        assert "M" in "".join(s.text for s in table.render_line(1))[-3:]
        await pilot.press("ctrl+z")
        await settle(pilot)
        assert app.source.flags.get(idx) is None and not app.source.flags.current

    run(body, cache)


def test_zoom_keys(cache):
    async def body(app, pilot):
        await pilot.press("enter")
        await settle(pilot)
        zoom = app.screen
        assert isinstance(zoom, ZoomScreen) and zoom.model == 0 and zoom.position == 0
        for key, model, position in (("l", 1, 0), ("h", 0, 0), ("left", 4, 0), ("j", 4, 1), ("k", 4, 0),
                                     ("up", 4, 0)):
            await pilot.press(key)
            await settle(pilot)
            assert (zoom.model, zoom.position) == (model, position), key
        text = "\n".join("".join(s.text for s in st) for st in zoom.query_one("#zoom-tiles").strips)
        assert "M5 vit-tiny-p8" in text
        await pilot.press("m")  # one method stored: stays on it
        await settle(pilot)
        text = "\n".join("".join(s.text for s in st) for st in zoom.query_one("#zoom-tiles").strips)
        assert "gradcam (1/1)" in text

    run(body, cache)


def test_zoom_flags_and_notes_the_case_it_shows_and_the_table_follows_it(cache):
    from gradfaith_tui.tui.screens.ask import AskScreen

    async def body(app, pilot):
        table = app.query_one(CaseTable)
        await pilot.press("enter", "j", "j")
        await settle(pilot)
        zoom = app.screen
        shown = table.source.idx_at(2)
        assert zoom.position == 2 and table.cursor == 0
        await pilot.press("2")
        await settle(pilot)
        assert app.source.flags.get(shown).category == "shortcut"
        assert app.source.flags.get(table.source.idx_at(0)) is None  # not the table's case
        text = "\n".join("".join(s.text for s in st) for st in zoom.query_one("#zoom-tiles").strips)
        assert "⚑ shortcut" in text
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, AskScreen) and table.source.row_at(2).case_id in str(app.screen.query_one("#ask-title").content)
        await pilot.press(*"ribs", "enter")
        await settle(pilot)
        assert app.source.flags.get(shown).note == "ribs" and app.screen is zoom
        key_before = app.view.key
        await pilot.press("f", "w", "t", "slash")  # the table's sorts and filters do nothing behind the zoom
        await settle(pilot)
        assert app.screen is zoom and app.view == replace(app.view, key=key_before) and not app.view.filter.active()
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not zoom and table.cursor == 2  # back on the case last shown

    run(body, cache)


def test_zoom_at_80x24_shows_every_suspect_reason_and_the_note_whole(cache):
    import sqlite3

    from gradfaith_tui.metrics.shortcuts import RULES

    con = sqlite3.connect(cache / "audit.sqlite")
    first = con.execute("SELECT idx FROM cases ORDER BY case_id LIMIT 1").fetchone()[0]
    expl_id, model_id = con.execute("SELECT e.expl_id, e.model_id FROM explanations e JOIN models m USING (model_id) "
                                    "WHERE m.is_ref=1 ORDER BY m.rowid LIMIT 1").fetchone()
    con.execute("DELETE FROM suspects WHERE idx=?", (first,))
    reasons = [r.reason.format(1.0) for r in RULES[-3:]]  # the longest ones, which wrap at 80 columns
    con.executemany("INSERT INTO suspects VALUES (?,?,?,?,?,?)",
                    [(expl_id, model_id, first, r.name, 1.0, text) for r, text in zip(RULES[-3:], reasons)])
    con.commit()
    con.close()

    async def body(app, pilot):
        assert app.source.idx_at(0) == first
        await pilot.press("enter", "2", "e", *"ribs and the table", "enter")
        await settle(pilot)
        zoom = app.screen
        assert isinstance(zoom, ZoomScreen) and zoom.source.columns[zoom.model].model.model_id == model_id
        strips = zoom.query_one("#zoom-tiles").strips
        text = " ".join("".join(s.text for s in st) for st in strips)
        assert len(strips) <= 24 - 2, "the picture and its labels fit under the title and above the footer"
        assert text.count("⚠") == 3
        words = " ".join(text.split())
        for reason in reasons:  # every word of every reason is there, in order, none cut off at the tile's edge
            last = reason.split()[-1]
            assert last in words, reason
        assert "ribs" in words and "table" in words

    run(body, cache, size=(80, 24))


def test_zoom_from_the_worst_model_view_opens_the_worst_model(cache):
    async def body(app, pilot):
        await pilot.press("f", "enter")
        await settle(pilot)
        idx = app.source.idx_at(0)
        faith = app.source.arrays.metric("faith")[:, idx]
        assert app.screen.model == int(faith.argmin())

    run(body, cache)


def test_a_filter_that_matches_nothing_clears_the_case_panel(cache):
    async def body(app, pilot):
        panel = app.query_one(HeatmapPanel)
        app.action_set_filter("search", "no such case")
        await settle(pilot)
        assert str(panel.query_one("#case-title").content).startswith("no case matches")
        assert panel.case_idx is None and not panel.query_one("#tiles").strips
        await pilot.press("escape")
        await settle(pilot)
        assert panel.case_idx == app.source.idx_at(0) and panel.query_one("#tiles").strips

    run(body, cache)


def test_narrow_terminal_gives_the_table_the_whole_width(cache):
    async def body(app, pilot):
        assert app.query_one("#table-pane").size.width == 80
        header = "".join(s.text for s in app.query_one(CaseTable).render_line(0))
        assert "Fl" in header  # the flag column is not cut off

    run(body, cache, size=(80, 24))


def test_a_cache_still_being_written_says_so_and_R_shows_the_new_maps(cache):
    import sqlite3

    db = cache / "audit.sqlite"
    con = sqlite3.connect(db)
    held = con.execute("SELECT * FROM metrics WHERE idx >= 40").fetchall()  # as if precompute were at case 40
    con.execute("DELETE FROM metrics WHERE idx >= 40")
    con.commit()

    async def body(app, pilot):
        await settle(pilot)
        title = str(app.query_one("#title").content)
        assert "maps 200/300 (incomplete)" in title  # 5 models x 40 of 60 cases
        app.action_sort("faith")
        await settle(pilot)
        assert np.isnan(app.source.arrays.metric("faith")[:, 50]).all()
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?)", held)  # precompute goes on writing
        con.commit()
        app._poll_cache()
        await settle(pilot)
        assert app.stale and "maps 300/300" not in str(app.query_one("#title").content)
        assert "R reloads" in str(app.query_one("#title").content)
        await pilot.press("R")
        await settle(pilot)
        assert not app.stale and not np.isnan(app.source.arrays.metric("faith")[:, 50]).any()
        assert "maps" not in str(app.query_one("#title").content)  # complete now

    run(body, cache)
    con.close()


def test_new_maps_found_under_the_zoom_are_announced_on_the_way_back(cache):
    import sqlite3

    con = sqlite3.connect(cache / "audit.sqlite")
    held = con.execute("SELECT * FROM metrics WHERE idx >= 40").fetchall()
    con.execute("DELETE FROM metrics WHERE idx >= 40")
    con.commit()

    def notices(app):
        return [n.message for n in app._notifications if "new maps" in n.message]

    async def body(app, pilot):
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?)", held)
        con.commit()
        app._poll_cache()
        await settle(pilot)
        assert app.stale and not notices(app)  # over the zoom it would read as about the zoomed map
        await pilot.press("escape")
        await settle(pilot)
        assert notices(app) == ["the cache has new maps: R reloads"]
        await pilot.press("M")  # a second round trip does not say it again: the title keeps saying it
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert len(notices(app)) == 1

    run(body, cache)
    con.close()


def test_masks_redrawn_by_a_precompute_meanwhile_are_offered_by_R(cache):
    """A rerun that took up redrawn lesion masks writes no map, only metrics and masks.npy: R still has news."""
    import sqlite3

    async def body(app, pilot):
        await settle(pilot)
        before = app.source.case_maps(0).mask.copy()
        masks = np.load(cache / "masks.npy")
        masks[0] = 0
        masks[0, :4, :4] = 1
        np.save(cache / "masks.tmp.npy", masks)
        con = sqlite3.connect(cache / "audit.sqlite")
        con.execute("UPDATE metrics SET value = 0.5 WHERE idx=0 AND name='locacc'")  # rows, then the file
        con.commit()
        con.close()
        (cache / "masks.tmp.npy").replace(cache / "masks.npy")
        app._poll_cache()
        await settle(pilot)
        assert app.stale
        # said as what it is: no map is new
        assert [n.message for n in app._notifications] == ["the cache has new lesion masks: R reloads"]
        assert "new lesion masks: R reloads" in str(app._title())
        await pilot.press("R")
        await settle(pilot)
        shown = app.source.case_maps(0).mask  # what the tiles outline
        assert not app.stale and shown[:4, :4].all() and not np.array_equal(shown, before)

    run(body, cache)


def test_iou_sort_shows_iou_and_the_model_key_keeps_the_case_and_names_the_model(cache):
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        await pilot.press("i")
        await settle(pilot)
        header = "".join(s.text for s in table.render_line(0))
        assert "IoU↑" in header and "LocAcc" not in header
        first = table.source.row_at(0)
        assert f"{first.worst('iou'):.2f}" in "".join(s.text for s in table.render_line(1))
        await pilot.press("n", "j", "j")
        await settle(pilot)
        idx = table.source.idx_at(2)
        await pilot.press("m")
        await settle(pilot)
        assert table.source.idx_at(table.cursor) == idx  # the same case, now with M1's values
        status = str(app.query_one("#status").content)
        assert "case id · columns: resnet10t" in status
        assert "LocAcc" in "".join(s.text for s in table.render_line(0))

    run(body, cache)


def test_the_confidence_sort_shows_each_models_confidence_in_the_model_cells(cache):
    from gradfaith_tui.tui.render import class_name

    async def body(app, pilot):
        table = app.query_one(CaseTable)
        app.action_sort("confidence")  # from the command palette: no key of its own
        await settle(pilot)
        first = table.source.row_at(0)
        line = "".join(s.text for s in table.render_line(1))
        for col in table.source.columns:  # "83✓": every model's confidence, with its right/wrong mark
            res = first.results[col.model.name]
            assert f"{min(99, round(100 * res.confidence)):>2}{'✓' if res.pred == first.label else '✗'}" in line
        confs = [min(r.confidence for r in table.source.row_at(k).results.values()) for k in range(5)]
        assert confs == sorted(confs)  # lowest first, as the status line says
        await pilot.press("f")  # another sort puts the class letters back
        await settle(pilot)
        row = table.source.row_at(0)
        marks = "".join(class_name(r.pred)[0] + ("✓" if r.pred == row.label else "✗") + " "
                        for r in (row.results[c.model.name] for c in table.source.columns))
        assert marks.rstrip() in "".join(s.text for s in table.render_line(1))

    run(body, cache)


def test_a_flat_map_is_labelled_and_help_names_the_colormap_in_use(cache):
    import sqlite3

    from gradfaith_tui.tui.screens.help import HelpScreen

    con = sqlite3.connect(cache / "audit.sqlite")
    expl_id, map_file = con.execute("SELECT e.expl_id, e.map_file FROM explanations e JOIN models m USING (model_id) "
                                    "WHERE m.name='resnet10t' AND m.is_ref=1").fetchone()
    first = con.execute("SELECT idx FROM cases ORDER BY idx LIMIT 1").fetchone()[0]
    con.close()
    maps = np.load(cache / map_file, mmap_mode="r+")
    maps[first] = 0  # Grad-CAM of a class no channel supports: zeros everywhere
    maps.flush()
    del maps

    async def body(app, pilot):
        app.action_set_filter("search", app.source.reader.rows([first])[0].case_id)
        await settle(pilot)
        panel = app.query_one(HeatmapPanel)
        text = "\n".join("".join(s.text for s in st) for st in panel.query_one("#tiles").strips)
        assert text.count(" flat") == 1  # M1 tile only
        await pilot.press("C", "question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "hot (black low, red, yellow, white high)" in app.screen.text.plain
        assert "higher is better for all" not in app.screen.text.plain

    run(body, cache)


def test_double_click_on_a_row_zooms_into_it(cache):
    async def body(app, pilot):
        await pilot.click(CaseTable, offset=(5, 3), times=2)
        await settle(pilot)
        assert isinstance(app.screen, ZoomScreen) and app.screen.position == 2

    run(body, cache)


def test_R_follows_explanations_a_precompute_with_other_settings_replaced(cache):
    import sqlite3

    from gradfaith_tui.store.writer import CacheWriter

    async def body(app, pilot):
        col = app.source.columns[0]
        con = sqlite3.connect(cache / "audit.sqlite")
        held = con.execute("SELECT idx, name, value FROM metrics WHERE expl_id=?", (col.expl_id,)).fetchall()
        con.close()
        writer = CacheWriter.__new__(CacheWriter)  # reopen as precompute does, without its data checks
        writer.root, writer.con, writer._maps = cache, sqlite3.connect(cache / "audit.sqlite"), {}
        writer.con.row_factory = sqlite3.Row
        new = writer.explanation(col.model.model_id, "gradcam", "synthetic", "other-settings", (4, 4), {"tau": 0.4})
        with writer.con:
            writer.con.executemany("INSERT INTO metrics VALUES (?,?,?,?)", [(new, *r) for r in held])
        writer.con.close()
        await pilot.press("R")
        await settle(pilot)
        assert app.source.columns[0].expl_id == new != col.expl_id
        assert not np.isnan(app.source.arrays.metric("faith")[0]).all()

    run(body, cache)


def test_a_click_on_a_column_header_sorts_by_it(cache):
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        header = "".join(s.text for s in table.render_line(0))
        for label, key in (("Faith", "faith"), ("LocAcc", "locacc"), ("Consist", "consist"), ("M1", "wrong"),
                           ("Case", "case")):
            await pilot.click(CaseTable, offset=(header.index(label) + 1, 0))
            await settle(pilot)
            assert app.view.key == key, label

    run(body, cache)


def test_the_zoom_keeps_its_case_when_a_late_sort_reorders_the_table_and_z_touches_only_it(cache):
    from rich.text import Text

    async def body(app, pilot):
        table = app.query_one(CaseTable)
        await pilot.press("j", "2", "k")  # a change to the second case, then back to the first
        await settle(pilot)
        other = table.source.idx_at(1)
        await pilot.press("enter")
        await settle(pilot)
        zoom = app.screen
        shown = zoom.idx
        assert shown == table.source.idx_at(0)
        await pilot.press("z")  # the last change was to another case: not from here
        await settle(pilot)
        assert app.source.flags.get(other).category == "shortcut"
        app.action_sort("faith")  # as a sort still running when enter was pressed lands now
        app.load_view(replace(app.view, key="faith"), None)
        await settle(pilot)
        assert zoom.idx == shown
        await pilot.press("1")
        await settle(pilot)
        assert app.source.flags.get(shown).category == "unfaithful"
        await pilot.press("z")  # now the last change is this case's: undone
        await settle(pilot)
        assert app.source.flags.get(shown) is None
        await pilot.press("escape")
        await settle(pilot)
        zoom._show(Text("late"), [])  # a picture finishing after the zoom closed is dropped

    run(body, cache)


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05])
def test_quitting_while_workers_report_back_raises_nothing(cache, delay):
    """A count, a sort and the array warm-up finishing as the app closes: their widgets may be gone by then
    (this failed at some delays, with NoMatches from the callbacks, before they checked the app still runs)."""
    import time

    async def body(app, pilot):
        count = app.source.completeness
        app.source.completeness = lambda: (time.sleep(delay), count())[1]
        app.count_maps(announce=True)
        app.load_view(app.view, None)
        app.warm_arrays()
    run(body, cache)


def test_no_color_draws_every_screen(cache, monkeypatch):
    """NO_COLOR (Textual's monochrome filter) meets every line drawn: the table, the tiles, the zoom, the models
    and help screens. Rich's plain segments (style None) once crashed it on the first tile."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def body(app, pilot):
        assert app.no_color
        for keys in (("j",), ("enter",), ("right",), ("escape", "M"), ("escape", "question_mark"), ("escape",)):
            await pilot.press(*keys)
            await settle(pilot)
        assert app.is_running and app.return_code is None and len(app.screen_stack) == 1
    run(body, cache)


def test_a_case_kept_through_a_widening_filter_is_scrolled_into_view(cache):
    """Searched down to one case, then the filter cleared: the table has its 60 rows again and shows the kept case
    under the cursor (the scroll was once clamped to the one-row list, leaving the flag keys on an unseen case)."""
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        last = table.source.idx_at(59)
        app.action_set_filter("search", CacheReader(app.reader.root).rows([last])[0].case_id)
        await settle(pilot)
        assert table.n_rows == 1
        await pilot.press("escape")
        await settle(pilot)
        visible = table.scrollable_content_region.height - 1
        assert table.n_rows == 60 and table.cursor == 59 and table.source.idx_at(59) == last
        assert table.scroll_y <= 59 < table.scroll_y + visible
        assert "▶" in "".join(s.text for y in range(1, visible + 1) for s in table.render_line(y))
    run(body, cache, size=(100, 30))


def test_R_picks_up_models_a_precompute_registered_after_the_explorer_opened(tmp_path):
    """Opened while only two of three models were listed: R lays the table, legend and tiles out anew for three,
    on the same case (it used to refuse: "quit and open the explorer again")."""
    import sqlite3

    root = build_synthetic_cache(tmp_path / "grow", 30, models=3, seeds=1)
    con = sqlite3.connect(root / "audit.sqlite")
    last = con.execute("SELECT model_id FROM models ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    expls = [r[0] for r in con.execute("SELECT expl_id FROM explanations WHERE model_id=?", (last,))]
    held = {}
    for table, where, keys in (("models", "model_id", [last]), ("explanations", "model_id", [last]),
                               ("predictions", "model_id", [last]), ("metrics", "expl_id", expls),
                               ("suspects", "expl_id", expls)):
        marks = ",".join("?" * len(keys))
        held[table] = con.execute(f"SELECT * FROM {table} WHERE {where} IN ({marks})", keys).fetchall()
        con.execute(f"DELETE FROM {table} WHERE {where} IN ({marks})", keys)
    con.commit()

    async def body(app, pilot):
        assert len(app.source.columns) == 2
        await pilot.press("2")  # a flag before the reload
        before = app.source.idx_at(0)
        await pilot.press("j", "j", "j")
        await settle(pilot)
        idx = app.source.idx_at(3)
        for table, rows in held.items():  # precompute registers the third model and writes its results
            if rows:
                con.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows)
        con.commit()
        app._poll_cache()
        await settle(pilot)
        assert app.stale
        app._counted((1, 999), announce=True)  # precompute writes on: the notice is not repeated every poll
        await settle(pilot)
        assert sum("new maps" in n.message for n in app._notifications) == 1
        await pilot.press("R")
        await settle(pilot)
        table = app.query_one(CaseTable)
        assert not app.stale and len(app.source.columns) == 3 and table.source is app.source
        assert table.source.idx_at(table.cursor) == idx and app.query_one(HeatmapPanel).case_idx == idx
        assert "M3" in "".join(s.text for s in table.render_line(0)) and "M3" in str(app.query_one("#models").content)
        assert app.query_one(HeatmapPanel).query_one("#tiles").strips and table.has_focus
        await pilot.press("j", "f", "1")  # the new table answers keys, and a flag lands on the case shown
        await settle(pilot)
        flagged = app.source.idx_at(table.cursor)
        assert app.source.flags.get(flagged).category == "unfaithful"
        await pilot.press("z", "z")  # that flag, then the one set before the reload: one undo history
        await settle(pilot)
        assert app.source.flags.get(flagged) is None and app.source.flags.get(before) is None

    run(body, root)
    con.close()


def test_the_status_line_keeps_the_match_count_ahead_of_the_filters_words(cache):
    async def body(app, pilot):
        app.action_set_filter("true_class", 2)
        app.action_set_filter("correct", False)
        await settle(pilot)
        status = str(app.query_one("#status").content)
        assert status.index(" · case ") < status.index("true Malignant")  # cut from the right at 80 columns

    run(body, cache, size=(80, 24))


def test_a_palette_action_over_the_zoom_runs_the_zooms_own_or_says_why_not(cache):
    from gradfaith_tui.tui.commands import ExplorerCommands

    async def body(app, pilot):
        seen: list[str] = []
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ZoomScreen)
        ExplorerCommands(app.screen)._run("sort('faith')")
        await settle(pilot)
        assert seen[-1] == "that acts on the case table: escape back to it first" and app.view.key == "case"
        ExplorerCommands(app.screen)._run("flag('unfaithful')")  # the zoom has its own: on the case it shows
        await settle(pilot)
        assert app.source.flags.get(app.screen.idx).category == "unfaithful"

    run(body, cache)


def test_consist_written_after_the_last_map_still_offers_R_and_R_keeps_the_overlay(cache):
    import sqlite3

    db = cache / "audit.sqlite"
    con = sqlite3.connect(db)
    held = con.execute("SELECT * FROM metrics WHERE name='consist'").fetchall()  # precompute writes Consist last
    con.execute("DELETE FROM metrics WHERE name='consist'")
    con.commit()

    async def body(app, pilot):
        await pilot.press("C", "o")  # a colormap and the outline the user chose
        await settle(pilot)
        overlay = app.overlay
        assert "maps" not in str(app.query_one("#title").content)  # every map is in
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?)", held)
        con.commit()
        app._poll_cache()
        await settle(pilot)
        assert app.stale and "R reloads" in str(app.query_one("#title").content)
        await pilot.press("R")
        await settle(pilot)
        assert not app.stale and app.query_one(HeatmapPanel).overlay == overlay
        assert app.source.row_at(0).worst("consist") is not None

    run(body, cache)
    con.close()


def test_no_color_gives_the_cursor_row_one_foreground_so_its_marks_stay_visible(cache, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def body(app, pilot):
        table = app.query_one(CaseTable)
        cursor = table._styles()[2]
        segs = [s for s in table.render_line(1) if s.text.strip()]
        assert "▶" in segs[0].text and all(s.style.color == cursor.color and s.style.bgcolor == cursor.bgcolor
                                           for s in segs)  # ✓, ✗ and ⚠ too, not white on white
    run(body, cache)


def test_the_reload_notice_names_what_is_new():
    from gradfaith_tui.tui.live import _what_is_new

    assert _what_is_new((10, 20, 0, 5), (12, 20, 0, 5)) == "new maps"
    assert _what_is_new((10, 20, 0, 5), (10, 30, 0, 5)) == "new maps"  # a model registered meanwhile
    assert _what_is_new((20, 20, 0, 5), (20, 20, 0, 6)) == "new lesion masks"
    assert _what_is_new((20, 20, 0, 5), (20, 20, 40, 5)) == "new results"  # Consist, suspects


def test_the_wrong_count_sort_arrow_points_the_way_its_values_run(cache):
    """Most wrong first is a falling count: ↓ as after r on the metric sorts (↑ once it said the opposite)."""
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        for keys, arrow in ((("w",), "↓"), (("r",), "↑"), (("f",), "↑"), (("r",), "↓")):
            await pilot.press(*keys)
            await settle(pilot)
            header = "".join(s.text for s in table.render_line(0))
            marked = "M5" if app.view.key == "wrong" else "Faith"
            assert f"{marked}{arrow}" in header, (keys, header)
    run(body, cache)


def test_a_sure_model_shows_100_in_its_aligned_confidence_cell(cache):
    async def body(app, pilot):
        table = app.query_one(CaseTable)
        app.action_sort("confidence")
        await settle(pilot)
        row = table.source.row_at(0)
        next(iter(row.results.values())).confidence = 0.998  # rounds to 100: once clamped to "99"
        header, line = ("".join(s.text for s in table.render_line(y)) for y in (0, 1))
        cells = [line[header.index(f"M{k}"):][:4] for k in range(1, 6)]  # each under its own header
        assert cells[0] in ("100✓", "100✗"), cells
        assert all(c[:3].strip().isdigit() and c[3] in "✓✗" for c in cells), cells
        assert header.index("Faith") > header.index("M5") + 3
    run(body, cache)
