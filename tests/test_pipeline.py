import sqlite3

import numpy as np
import pytest

from gradfaith_tui.errors import CacheError, CheckpointError
from gradfaith_tui.pipeline import precompute
from gradfaith_tui.store.cache import CacheReader
from tests.conftest import TINY_MODELS


def test_cache_holds_every_case_model_and_metric(cache, phantoms):
    r = CacheReader(cache)
    assert [c.model.name for c in r.columns] == TINY_MODELS
    assert len(r.models) == 4  # two seeds each
    rows = r.rows(range(r.n_cases))
    assert len(rows) == r.n_cases > 0
    for row in rows:
        for name in TINY_MODELS:
            res = row.results[name]
            assert res.pred in (0, 1, 2) and 0 <= res.confidence <= 1
            assert -1 <= res.metrics["faith"] <= 1
            assert 0 <= res.metrics["consist"] <= 1
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
    r = CacheReader(cache)
    order = r.order("faith")
    worst = [row.worst("faith") for row in r.rows(order)]
    assert worst == sorted(worst)
    loc = [row.worst("locacc") for row in r.rows(r.order("locacc"))]
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


def test_empty_or_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(CacheError, match="no audit cache"):
        CacheReader(tmp_path)
    (tmp_path / "audit.sqlite").write_bytes(b"")
    with pytest.raises(CacheError):
        CacheReader(tmp_path)
