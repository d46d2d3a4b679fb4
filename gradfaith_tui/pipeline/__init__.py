"""Precompute: dataset -> checkpoints -> CAMs -> metrics -> cache, resumable batch by batch.

Under torchrun every rank explains its shard of the cases into the one cache (SQLite serialises the
writes; map rows are disjoint); rank 0 registers the models first and writes Table I, Consist and the
sanity checks last. job.py holds one checkpoint's work, stored.py what is derived from the stored maps.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from gradfaith_tui.config import CamSettings
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import SplitArrays, load_split, prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.locks import writer_lock
from gradfaith_tui.models.card import provenance_gap
from gradfaith_tui.models.distributed import from_env
from gradfaith_tui.models.registry import find_checkpoints, refuse_other_data, unfinished
from gradfaith_tui.pipeline.job import Segmentations, Job, cores
from gradfaith_tui.pipeline.stored import refresh_masks, rederive_suspects, write_consist
from gradfaith_tui.store.records import CaseInfo
from gradfaith_tui.store.writer import CacheWriter
from gradfaith_tui.store.exports import write_evaluation_files
from gradfaith_tui.store.keys import checkpoint_identity, explanation_key


def precompute(data: Path, checkpoints: Path, cache: Path, names: list[str] | None = None, seeds: list[int] | None = None,
               cam: CamSettings = CamSettings(), target: str = "pred", target_layer: str | None = None,
               device: str = "cpu", strict: bool = False, force: bool = False, with_timing: bool = True,
               warn: Callable[[str], None] = print,
               progress: Callable[[str, int, int], None] = lambda *a: None,
               window: tuple[float, float] | None = None) -> Path:
    """Fill the cache with maps, predictions, metrics, suspects, Table I, Consist and sanity checks; skip what is done."""
    if target not in ("pred", "true"):
        raise GradfaithError(f"--target: '{target}' (choose pred or true)")
    dist = from_env(device)
    device = dist.device(device)
    ds = discover(data, window, strict=strict)  # window: DICOM's default (--window)
    for w in ds.warnings + ds.problems:
        warn(w)
    ckpts = find_checkpoints(checkpoints, names, seeds)
    for w in unfinished(ckpts) if dist.main else []:
        warn(w)
    split_seeds = {c.card.get("split_seed", 0) for c in ckpts}
    if len(split_seeds) > 1:
        raise CheckpointError(f"--checkpoints: models were trained on different splits (seeds {sorted(split_seeds)})")
    if not force:
        refuse_other_data(ckpts, ds, data)
    prep = prepare(ds, split_seeds.pop(), warn)
    gaps = {c.model_id: provenance_gap(c.card, prep.fingerprints, prep.split_hash, prep.split_seed) for c in ckpts}
    for c in ckpts:
        if gaps[c.model_id] and not force:
            raise CheckpointError(f"{c.directory}: trained {gaps[c.model_id]}; retrain, or pass --force")
        if gaps[c.model_id] and dist.main:  # kept in the cache too: the report must not look like a clean audit
            warn(f"{c.model_id}: trained {gaps[c.model_id]}; explained anyway, as --force asks: its test metrics "
                 f"may include training cases")
    test_samples = sorted(prep.samples(ds, "test"), key=lambda s: s.case_id)
    display = max(c.card["img_size"] for c in ckpts)
    base = load_split(test_samples, display, strict=strict, warn=warn, split="test", source=prep.split_file)
    cases = [CaseInfo(s.case_id, s.label, s.patient, bool(h), s.shortcut) for s, h in zip(base.samples, base.has_mask)]
    config = {"data": str(data), "layout": ds.layout, "checkpoints": str(checkpoints), "method": cam.method,
              "cam": asdict(cam), "target": target, "split_seed": prep.split_seed, "n_test": len(cases),
              "dataset_size": len(ds.samples), "class_counts": ds.counts(), "torch": torch.__version__,
              "world_size": dist.world, "identical_files": prep.identical}  # the report's data caveats read this
    arrays = {display: base}

    def arrays_at(size: int) -> SplitArrays:
        if size not in arrays:  # the same files at another size (their warnings were given for `base`)
            arrays[size] = load_split(base.samples, size, strict=strict)
            if len(arrays[size]) != len(base):
                raise GradfaithError(f"--data: {data}: files changed while precompute read them; run it again")
        return arrays[size]

    # Every model loaded and its target layer checked before the cache is made: a --target-layer that gives
    # no spatial map, or weights that do not load, leave nothing behind. A run writing there now is said first.
    if dist.main and Path(cache).is_dir():
        with writer_lock(Path(cache), "precompute"):
            pass
    jobs = [Job(c, gaps[c.model_id]) for c in ckpts]
    for job in jobs:
        job.load(device, target_layer)
        job.check_layer(cam, arrays_at(job.size))
    if not dist.main:
        dist.barrier()  # rank 0 creates the cache and registers the models first
    writer = CacheWriter(cache, prep.fingerprints, prep.split_hash, config, cases, base.images, base.masks, warn,
                         lock=dist.main)
    try:
        if dist.main:
            refresh_masks(writer, arrays_at, warn)

        # The lowest seed of each name is the reference for Consist, among this run's and those the cache shows
        # already: a run of seed 1 alone must not make a second reference beside the cache's seed 0.
        refs: dict[str, int] = {}
        for name, seed in [(c.card["name"], c.card["seed"]) for c in ckpts] + writer.reference_seeds(cam.method):
            refs[name] = min(refs.get(name, seed), seed)
        for job in jobs:
            job.is_ref = refs[job.card["name"]] == job.card["seed"]
            job.key = explanation_key(checkpoint_identity(job.card), writer.fingerprint, cam.method, job.layer.name,
                                      cam.tau, cam.baseline, target, cam.deep_steps, cam.engine)
        # Registered only once every model has loaded (seconds each), back to back: an explorer opened early
        # sees the whole set of models rather than the first few.
        for job in jobs if dist.main else ():
            job.register(writer, cam, target, arrays_at(job.size))
        if dist.main:
            dist.barrier()
        else:
            for job in jobs:
                job.expl_id = writer.explanation(job.ckpt.model_id, cam.method, job.layer.name, job.key, (0, 0), {})
        for job in jobs:  # every rank plans from the same snapshot, before anyone writes
            job.plan(writer, len(base), dist)
        dist.barrier()
        seg = Segmentations(max(1, (cores() - 1) // dist.world))
        for job in jobs:
            job.explain(writer, arrays_at(job.size), seg, cam, target, dist, device, progress, warn)
            if not dist.main:
                job.model = None
        dist.barrier()
        if dist.main:
            for job in jobs:
                job.evaluate(writer, arrays_at(job.size), with_timing, device)
            write_consist(writer, jobs, display, cam.tau, target, cam.method)
            rederive_suspects(writer, jobs)
            if cam.sanity_cases:
                for job in jobs:
                    if job.is_ref:
                        job.sanity(writer, arrays_at(job.size), cam, device, target)
            bodies = {r[0]: json.loads(r[1]) for r in writer.con.execute("SELECT model_id, body FROM evaluation ORDER BY model_id")}
            write_evaluation_files(cache, bodies)  # the same numbers as `evaluate` writes, for scripts
    finally:
        writer.close()
    dist.barrier()
    return Path(cache)


__all__ = ["precompute"]
