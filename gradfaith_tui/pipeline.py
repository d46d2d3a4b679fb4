"""Precompute: dataset -> checkpoints -> CAMs -> metrics -> cache, resumable batch by batch.

Under torchrun every rank explains its shard of the cases into the one cache (SQLite serialises the
writes; map rows are disjoint); rank 0 registers the models first and writes Table I, Consist and the
sanity checks last.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gradfaith_tui.config import CamSettings
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import SplitArrays, load_split, prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError, batch_size_on_out_of_memory
from gradfaith_tui.locks import writer_lock
from gradfaith_tui.models.distributed import from_env
from gradfaith_tui.models.factory import load_checkpoint
from gradfaith_tui.models.registry import find_checkpoints, refuse_other_data, unfinished
from gradfaith_tui.store.files import changed_masks
from gradfaith_tui.store.records import CaseInfo, ModelInfo
from gradfaith_tui.store.writer import CacheWriter
from gradfaith_tui.store.exports import write_evaluation_files
from gradfaith_tui.store.keys import checkpoint_identity, explanation_key


AHEAD_DEVICES = ("cuda",)  # where the next batch is queued before this one is written (tests add "cpu")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Segmentations:
    """Body and lung fields per case, at each input size in use, computed once (classical, no network).

    At 224 px a slice takes ~11 ms on one core, far more than a GPU spends explaining it, so large sets
    are spread over worker processes (spawned: the parent may hold a CUDA context).
    """

    PARALLEL_PIXELS = 15_000_000  # ~300 slices at 224 px: below this, starting workers costs more than it saves

    def __init__(self, workers: int = 1):
        self.workers = workers
        self._by_size: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, arr: SplitArrays) -> tuple[np.ndarray, np.ndarray]:
        from gradfaith_tui.metrics.shortcuts import segment

        size = arr.images.shape[-1]
        if size not in self._by_size:
            images = arr.images
            if self.workers > 1 and images.size >= self.PARALLEL_PIXELS:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                chunks = np.array_split(images, self.workers * 4)
                with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                    parts = list(pool.map(segment, chunks))
                self._by_size[size] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            else:
                self._by_size[size] = segment(images)
        return self._by_size[size]


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
    for c in ckpts:
        if c.card.get("split_hash") not in (None, prep.split_hash) and not force:
            raise CheckpointError(f"{c.directory}: trained on another split of this data; retrain, or pass --force")
    test_samples = sorted(prep.samples(ds, "test"), key=lambda s: s.case_id)
    display = max(c.card["img_size"] for c in ckpts)
    base = load_split(test_samples, display, strict=strict, warn=warn)
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
    jobs = [_Job(c) for c in ckpts]
    for job in jobs:
        job.load(device, target_layer)
        job.check_layer(cam, arrays_at(job.size))
    if not dist.main:
        dist.barrier()  # rank 0 creates the cache and registers the models first
    writer = CacheWriter(cache, prep.fingerprints, prep.split_hash, config, cases, base.images, base.masks, warn,
                         lock=dist.main)
    try:
        if dist.main:
            _refresh_masks(writer, arrays_at, warn)

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
        seg = _Segmentations(max(1, (_cores() - 1) // dist.world))
        for job in jobs:
            job.explain(writer, arrays_at(job.size), seg, cam, target, dist, device, progress, warn)
            if not dist.main:
                job.model = None
        dist.barrier()
        if dist.main:
            for job in jobs:
                job.evaluate(writer, arrays_at(job.size), with_timing, device)
            _write_consist(writer, jobs, display, cam.tau, target, cam.method)
            _rederive_suspects(writer, jobs)
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


class _Job:
    """One checkpoint's work in precompute."""

    def __init__(self, ckpt):
        self.ckpt, self.is_ref = ckpt, False  # is_ref: set once the cache says which seeds it holds
        self.size = ckpt.card["img_size"]
        self.model = self.layer = self.key = None
        self.expl_id: int | None = None
        self.todo = np.zeros(0, np.int64)
        self.computed = 0

    def load(self, device: str, target_layer: str | None) -> None:
        from gradfaith_tui.cam.layers import find as find_layer

        from gradfaith_tui.models.precision import to_device

        self.model, self.card = load_checkpoint(self.ckpt.directory, force=True)
        self.model = to_device(self.model, device)
        self.layer = find_layer(self.model.net, target_layer)

    def check_layer(self, cam: CamSettings, arr: SplitArrays) -> None:
        from gradfaith_tui.cam.layers import check_spatial
        from gradfaith_tui.cam.rollout import ROLLOUT_METHODS

        if cam.method not in ROLLOUT_METHODS:  # rollout reads the attention, not the target layer
            check_spatial(self.model, self.model.net, self.layer, self._one(arr))

    def _one(self, arr: SplitArrays) -> torch.Tensor:
        from gradfaith_tui.models.train import to_tensor

        return to_tensor(arr.images[:1], next(self.model.parameters()).device)

    def register(self, writer: CacheWriter, cam: CamSettings, target: str, arr: SplitArrays) -> None:
        from gradfaith_tui.cam.engine import explainer

        x = self._one(arr)
        card = self.card
        info = ModelInfo(self.ckpt.model_id, card["name"], card["arch"], card["family"], card.get("describe", card["arch"]),
                         card["seed"], self.is_ref, self.size)
        writer.add_model(info, checkpoint_identity(card), card)
        # One image gives the grid: not worth folding the trunk for (explain() folds it for the real batches).
        with explainer(self.model, self.layer, cam.method, cam.engine, fold=False) as explain:
            grid = tuple(explain(x).maps.shape[1:])
        self.expl_id = writer.explanation(self.ckpt.model_id, cam.method, self.layer.name, self.key, grid,
                                          {"tau": cam.tau, "baseline": cam.baseline, "target": target,
                                           "engine": cam.engine, "deep_steps": cam.deep_steps})

    def plan(self, writer: CacheWriter, n: int, dist) -> None:
        self.todo = np.array(sorted(set(range(n)) - writer.done(self.expl_id)), dtype=np.int64)[dist.rank::dist.world]
        self.computed = len(self.todo)

    def explain(self, writer, arr, seg, cam, target, dist, device, progress, warn=print) -> None:
        from gradfaith_tui.cam.engine import explainer
        from gradfaith_tui.metrics.per_case import device_metrics
        from gradfaith_tui.metrics.readback import Pending
        from gradfaith_tui.metrics.shortcuts import suspect_reasons
        from gradfaith_tui.metrics.staging import Stager

        n, todo = len(arr), self.todo
        done = n - len(todo)
        progress(self.ckpt.model_id, done, n)
        if not len(todo):
            return
        body, lungs = seg.get(arr)
        stage = Stager(arr.images, arr.masks, body, lungs, arr.shortcut_regions,
                       arr.labels if target == "true" else None, cam.batch_size, device)
        batches = [todo[s:s + cam.batch_size] for s in range(0, len(todo), cam.batch_size)]

        def launch(b) -> Pending:  # on a GPU this only queues the work: the host goes on at once
            ex = explain(b.x, b.labels)
            on_device = device_metrics(explain.forward, b, ex, cam.tau, cam.baseline, cam.deep_steps)
            return Pending(ex.maps, torch.softmax(ex.logits, 1), on_device)

        def finish(idx: np.ndarray, pending: Pending) -> None:
            nonlocal done
            r = pending.wait()
            finite = np.isfinite(r.probs).all(1)
            if not finite.all():  # finite weights (checked on load) yet an activation overflowed
                bad = idx[~finite]
                raise CheckpointError(f"{self.ckpt.directory}: non-finite class scores on {device} for "
                                      f"{len(bad)} case(s) (first: case {int(bad[0])}); the finished batches "
                                      f"are kept; try --device cpu, which runs in fp32")
            suspects = [(int(i), *s) for j, i in enumerate(idx)
                        for s in suspect_reasons({m: v[j] for m, v in r.metrics.items()})]
            writer.write_batch(self.expl_id, self.ckpt.model_id, idx, r.maps, r.probs.argmax(1), r.probs,
                               r.metrics, suspects)
            done += len(idx)
            progress(self.ckpt.model_id, done, n)

        # On a GPU the next batch is queued before this one is read back and written, so the device works
        # while the host writes; a kill then loses the two batches in flight (a fraction of a second's work). On the
        # CPU, where the work itself is the wait, each batch is written before the next starts: at most one.
        ahead = 1 if torch.device(device).type in AHEAD_DEVICES else 0
        queue: list[tuple[np.ndarray, Pending]] = []
        staged = stage(batches[0])
        with explainer(self.model, self.layer, cam.method, cam.engine, compile=cam.compile) as explain:
            with batch_size_on_out_of_memory(cam.batch_size, self.ckpt.model_id, device, "batches"):
                for k, idx in enumerate(batches):
                    queue.append((idx, launch(staged)))
                    if len(queue) > ahead:
                        finish(*queue.pop(0))
                    if k + 1 < len(batches):  # into the buffers of a batch already read back (metrics/staging.py)
                        staged = stage(batches[k + 1])
                while queue:
                    finish(*queue.pop(0))
            if cam.compile and dist.main:
                warning = _not_compiled(explain)
                if warning:
                    warn(f"{self.ckpt.model_id}: {warning}")

    def evaluate(self, writer, arr, with_timing: bool, device: str) -> None:
        from gradfaith_tui.models.evaluate import timing
        from gradfaith_tui.models.table1 import confusion, table1

        model_id = self.ckpt.model_id
        if not self.computed and writer.has_evaluation(model_id):
            return  # nothing new for this model: keep its stored Table I and timing
        preds = writer.con.execute("SELECT idx, pred FROM predictions WHERE model_id=? ORDER BY idx", (model_id,)).fetchall()
        body = table1(confusion(arr.labels[[r[0] for r in preds]], np.array([r[1] for r in preds])))
        body["n"] = len(preds)
        if with_timing:
            body["timing"] = timing(self.model, self.size, device)
        writer.write_evaluation(model_id, body)

    def sanity(self, writer, arr, cam: CamSettings, device: str, target: str = "pred") -> None:
        """target: the class the stored maps explain (--target), which the randomised maps explain too."""
        from gradfaith_tui.cam.engine import explainer
        from gradfaith_tui.cam.layers import find as find_layer
        from gradfaith_tui.metrics.sanity import cascading_randomisation
        from gradfaith_tui.models.train import to_tensor

        if writer.has_sanity(self.ckpt.model_id, cam.method) and not self.computed:
            return

        def maps(model, x, targets):
            layer = find_layer(model.net, self.layer.name)
            # fold=False: a fresh fold per randomised stage would cost more than it saves on a few cases
            with explainer(model, layer, cam.method, cam.engine, fold=False) as explain:
                return explain(x, targets).maps

        rows = spread_over_classes(arr.labels, cam.sanity_cases)
        k = len(rows)
        x = to_tensor(arr.images[rows], device)
        if target == "true":
            targets = torch.as_tensor(arr.labels[rows], device=x.device).long()
        else:
            with torch.no_grad():
                targets = self.model(x).argmax(1)
        stages = cascading_randomisation(self.model, x, targets, maps)
        writer.write_sanity(self.ckpt.model_id, cam.method, stages, k)


def spread_over_classes(labels: np.ndarray, k: int) -> np.ndarray:
    """k test cases taken from each class in turn (in case order within a class): the sanity check's sample,
    which the first k cases in case-id order would fill from one class (the class folders sort together)."""
    queues = [list(np.flatnonzero(labels == c)) for c in sorted(set(labels.tolist()))]
    out: list[int] = []
    while len(out) < min(k, len(labels)):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return np.array(sorted(out), dtype=np.int64)


def _not_compiled(explain) -> str | None:
    """Why --compile did not apply to this model's engine, or None where its trunk ran compiled."""
    split = getattr(explain, "split", None)
    if split is None:
        return ("--compile: not compiled (only the fast Grad-CAM engine's trunk is: a CNN's up to a target layer that "
                "ends the features, a timm VisionTransformer's blocks before a target layer inside a block)")
    if split.compiled is not None and split.compiled.broken:
        return f"--compile: the plain trunk ran, compiling failed ({split.compiled.broken})"
    return None


def _refresh_masks(writer: CacheWriter, arrays_at: Callable[[int], SplitArrays], warn: Callable[[str], None]) -> None:
    """Lesion masks added, redrawn or removed since the cache was built (they are not part of the data's
    fingerprint, so the cache and the checkpoints stay valid): the metrics that read them are recomputed from
    the stored maps, for every explanation in the cache, and the new masks stored. No model runs."""
    from gradfaith_tui.cam.methods import upsample
    from gradfaith_tui.metrics.per_case import mask_metrics

    old, old_has = writer.stored_masks()
    now = arrays_at(old.shape[-1])
    changed = changed_masks(old, old_has, now.masks, now.has_mask)
    if not len(changed):
        return
    updates = []
    for expl_id, size, tau in writer.explanations_by_size():
        rows = np.array(sorted(writer.done(expl_id) & set(changed.tolist())), np.int64)
        if not len(rows):
            continue
        maps, masks = writer.read_maps(expl_id), arrays_at(size).masks
        parts = [mask_metrics(upsample(maps[r], size), torch.from_numpy(masks[r]), tau)
                 for r in np.array_split(rows, -(-len(rows) // 256))]  # 256 maps at a time: bounded memory
        updates.append((expl_id, rows, {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}))
    writer.replace_masks(now.masks, now.has_mask, updates)
    warn(f"{writer.root}: lesion masks changed for {len(changed)} test case(s) since the cache was built; LocAcc, "
         f"IoU, pointing game and relevance recomputed from the stored maps ({len(updates)} explanation(s))")


def _rederive_suspects(writer: CacheWriter, jobs: list[_Job]) -> None:
    """Suspects from the stored metrics with today's rules, so a change of threshold needs no recomputation."""
    from gradfaith_tui.metrics.shortcuts import RULE_METRICS, suspect_reasons

    for j in jobs:
        values = writer.metric_values(j.expl_id, RULE_METRICS)
        rows = [(idx, *s) for idx, v in sorted(values.items())
                for s in suspect_reasons({k: (float("nan") if x is None else x) for k, x in v.items()})]
        writer.replace_suspects(j.expl_id, j.ckpt.model_id, rows)


def _write_consist(writer: CacheWriter, jobs: list[_Job], size: int, tau: float, target: str, method: str) -> None:
    """Consist per case and architecture name, stored on every seed's explanation of that name; with the
    predicted class as target, over the seeds whose map explains the reference seed's class (eq. 6's c)."""
    from gradfaith_tui.cam.methods import upsample
    from gradfaith_tui.config import CLASS_AGNOSTIC_METHODS
    from gradfaith_tui.store.keys import CONSIST_RULE
    from gradfaith_tui.metrics.consistency import consist

    groups: dict[str, list[_Job]] = {}
    for j in jobs:
        groups.setdefault(j.card["name"], []).append(j)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda j: not j.is_ref)  # reference first
        maps = [writer.read_maps(j.expl_id) for j in members]
        idx = np.flatnonzero(np.all([~np.isnan(m).any(axis=(1, 2)) for m in maps], axis=0))
        targets = None
        if target == "pred" and method not in CLASS_AGNOSTIC_METHODS:  # "true": every seed explains the label, one class
            targets = []
            for j in members:
                pred = np.full(len(maps[0]), -1, np.int64)
                rows = writer.con.execute("SELECT idx, pred FROM predictions WHERE model_id=?", (j.ckpt.model_id,)).fetchall()
                if rows:
                    pred[[r[0] for r in rows]] = [r[1] for r in rows]
                targets.append(pred[idx])
        if len(idx):
            values = consist([upsample(m[idx], size).numpy() for m in maps], tau, ref=0, targets_by_seed=targets)
            for j in members:
                writer.set_metrics(j.expl_id, idx, {"consist": values})
        with writer.con:  # the rule these explanations' Consist follows (demo's freshness check and the report read it)
            writer.con.executemany("UPDATE explanations SET settings = json_set(COALESCE(NULLIF(settings, ''), '{}'), "
                                   "'$.consist_rule', ?) WHERE expl_id = ?", [(CONSIST_RULE, j.expl_id) for j in members])
