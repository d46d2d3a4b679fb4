"""The explorer on a cache it does not have to itself: a folder this user cannot write, keys typed ahead of a
sort, a precompute that adds models meanwhile, the cache deleted or rebuilt under it."""

from __future__ import annotations

import asyncio
import errno
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from gradfaith_tui.store.flags import FlagStore
from gradfaith_tui.store.reader import CacheReader
from gradfaith_tui.store.synthetic import build_synthetic_cache
from gradfaith_tui.tui.app import make_app
from gradfaith_tui.tui.widgets.case_table import CaseTable


@pytest.fixture()
def cache(tmp_path_factory) -> Path:
    return build_synthetic_cache(tmp_path_factory.mktemp("shared"), 40)


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def run(body, cache, size=(120, 40), **kwargs):
    async def main():
        app = make_app(cache, **kwargs)
        seen: list[str] = []
        real = app.notify
        app.notify = lambda message, **kw: (seen.append(str(message)), real(message, **kw))[1]
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(app, pilot, seen)
        return app
    return asyncio.run(main())


def db_flags(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    out = con.execute("SELECT idx, category, undone FROM flags ORDER BY flag_id").fetchall()
    con.close()
    return out


class _Refused:
    """A read-write connection in a folder this user cannot write, as SQLite gives it for a WAL database
    without its -shm file: opened, then every statement refused. (The tests run as root, whom chmod does not stop.)"""

    def execute(self, *a, **k):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    def close(self):
        pass


def _unwritable(monkeypatch):
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, **k) if k.get("uri") else _Refused())


def test_a_cache_this_user_cannot_write_shows_and_exports_its_flags(cache, tmp_path, monkeypatch):
    store = FlagStore(cache)
    store.flag(3, "unfaithful")
    store.note(5, "look again")
    store.close()
    _unwritable(monkeypatch)
    monkeypatch.chdir(tmp_path)
    real_export = __import__("gradfaith_tui.tui.actions", fromlist=["export_flags"]).export_flags

    def export(store, reader, out):  # the cache's own exports/ refuses this user
        if Path(out) == cache / "exports":
            raise PermissionError(errno.EACCES, "Permission denied", str(cache / "exports"))
        return real_export(store, reader, out)
    monkeypatch.setattr("gradfaith_tui.tui.actions.export_flags", export)

    async def body(app, pilot, seen):
        assert set(app.source.flags.current) == {3, 5} and app.source.flags_readonly
        assert any(m.startswith(f"flags disabled: cannot write {cache / 'audit.sqlite'}") for m in seen)  # at once
        table = app.query_one(CaseTable)
        shown = "".join(s.text for s in table.render_line(1 + list(app.source.order).index(3)))
        assert "U" in shown  # the flag column shows it
        await pilot.press("u")  # the flags filter finds them
        await settle(pilot)
        assert sorted(app.source.order) == [3, 5]
        await pilot.press("x")
        await settle(pilot)
        out = tmp_path / "gradfaith-exports" / cache.name
        assert (out / "flagged.csv").is_file() and (out / "flagged.json").is_file()
        assert seen[-1].startswith(f"2 cases → {out / 'flagged.csv'}") and "cannot be written" in seen[-1]
        await pilot.press("2")  # refused in one line, nothing written
        await settle(pilot)
        assert seen[-1].startswith("flags disabled: cannot write") and app.is_running

    run(body, cache)
    monkeypatch.undo()
    assert [r[:2] for r in db_flags(cache / "audit.sqlite") if r[2] == 0] == [(3, "unfaithful"), (5, "note")]


def test_a_never_flagged_cache_this_user_cannot_write_opens_with_no_flags(cache, monkeypatch):
    con = sqlite3.connect(cache / "audit.sqlite")
    con.execute("DROP TABLE IF EXISTS flags")
    con.commit()
    con.close()
    _unwritable(monkeypatch)

    async def body(app, pilot, seen):
        assert app.source.flags.current == {} and app.source.flags_readonly
        for key in ("u", "z", "1", "x"):
            await pilot.press(key)
            await settle(pilot)
            assert app.is_running
        assert seen[-1] == "no flagged cases to export"

    run(body, cache)


def test_keys_typed_during_a_sort_act_on_the_new_order(cache):
    """`f 3` sent at once (a paste, typing ahead over SSH): the flag goes to the first case of the new order,
    the one on screen, not to the case the old order had under the cursor; moves count from the new top."""

    async def body(app, pilot, seen):
        compute = app.source.compute
        app.source.compute = lambda view: (time.sleep(0.3), compute(view))[1]  # a big cache's sort
        await pilot.press("j", "j", "j")
        await settle(pilot)
        before = app.source.idx_at(3)
        await pilot.press("f", "3")
        await settle(pilot)
        first = app.source.idx_at(0)
        assert first != before
        assert set(app.source.flags.current) == {first} and app.source.flags.get(first).category == "mislocalised"
        assert app.query_one(CaseTable).cursor == 0
        await pilot.press("l", "j", "j")
        await settle(pilot)
        assert app.query_one(CaseTable).cursor == 2 and app.view.key == "locacc"

    run(body, cache)


def test_the_count_covers_models_a_finished_precompute_added_after_the_explorer_opened(cache, tmp_path):
    """A reader opened before a model was registered counts that model's maps too, as the title's total does:
    `maps 40/80` after the precompute has finished would read as one still running."""
    full = sqlite3.connect(cache / "audit.sqlite")
    last = full.execute("SELECT name FROM models ORDER BY name DESC LIMIT 1").fetchone()[0]
    full.close()
    early = tmp_path / "early"
    shutil.copytree(cache, early)
    con = sqlite3.connect(early / "audit.sqlite")
    ids = [r[0] for r in con.execute("SELECT model_id FROM models WHERE name=?", (last,))]
    marks = ",".join("?" * len(ids))
    expl = [r[0] for r in con.execute(f"SELECT expl_id FROM explanations WHERE model_id IN ({marks})", ids)]
    con.execute(f"DELETE FROM metrics WHERE expl_id IN ({','.join('?' * len(expl))})", expl)
    con.execute(f"DELETE FROM explanations WHERE model_id IN ({marks})", ids)
    con.execute(f"DELETE FROM models WHERE model_id IN ({marks})", ids)
    con.commit()
    con.close()
    reader = CacheReader(early)  # opened before that model was there
    n, k = reader.n_cases, len(reader.columns)
    assert reader.completeness() == (n * k, n * k)
    con = sqlite3.connect(early / "audit.sqlite")  # the precompute registers it, then finishes its maps
    con.execute("ATTACH ? AS full", (str(cache / "audit.sqlite"),))
    con.execute(f"INSERT INTO models SELECT * FROM full.models WHERE model_id IN ({marks})", ids)
    con.execute(f"INSERT INTO explanations SELECT * FROM full.explanations WHERE model_id IN ({marks})", ids)
    con.commit()
    assert reader.completeness() == (n * k, n * (k + 1))  # registered, no map yet: still running
    con.execute(f"INSERT INTO metrics SELECT * FROM full.metrics WHERE expl_id IN ({','.join('?' * len(expl))})", expl)
    con.commit()
    con.close()
    assert len(reader.columns) == k and reader.completeness() == (n * (k + 1), n * (k + 1))
    reader.close()


def test_a_cache_deleted_or_rebuilt_under_the_explorer_stops_flags_until_r_opens_the_new_one(cache, tmp_path):
    db = cache / "audit.sqlite"
    spare = tmp_path / "spare.sqlite"
    shutil.copy(db, spare)

    async def body(app, pilot, seen):
        away = tmp_path / "deleted.sqlite"
        db.rename(away)  # the folder deleted (the open connection still reads the old file)
        app._poll_cache()
        await settle(pilot)
        assert app.gone == "deleted" and "cache deleted: flags off" in str(app.query_one("#title").content)
        assert seen[-1] == f"{db} was deleted after the explorer read it: flags are off"
        await pilot.press("1")
        await settle(pilot)
        assert seen[-1] == f"flags disabled: {db} was deleted after the explorer read it"
        assert db_flags(away) == []  # not written into the deleted file, where it would be lost
        await pilot.press("R")
        await settle(pilot)
        assert seen[-1].startswith("cannot reload:") and app.is_running

        shutil.copy(spare, db)  # rebuilt: a new database in its place
        app._poll_cache()
        await settle(pilot)
        assert app.gone == "replaced" and seen[-1].endswith("flags are off; R opens the new one")
        await pilot.press("R")
        await settle(pilot)
        assert app.gone == "" and not app.source.flags_readonly
        first = app.source.idx_at(app.query_one(CaseTable).cursor)
        await pilot.press("1")
        await settle(pilot)
        assert db_flags(db) == [(first, "unfaithful", 0)]  # into the new database

    run(body, cache)


def test_a_flag_written_right_after_the_cache_was_deleted_is_refused_with_its_note(cache, tmp_path):
    """Between two polls: the write itself checks, and a note typed meanwhile is repeated in the refusal."""
    db = cache / "audit.sqlite"

    async def body(app, pilot, seen):
        await pilot.press("e")
        await settle(pilot)
        db.rename(tmp_path / "deleted.sqlite")
        app.screen.query_one("#ask-input").value = "keep me"
        await pilot.press("enter")
        await settle(pilot)
        assert seen[-1].endswith("; not saved: keep me") and app.gone == "deleted"

    run(body, cache)
