"""One checkpoint's work in precompute: load it, register it, explain its share of the test cases batch by
batch into the cache, then its Table I and sanity check."""

from __future__ import annotations

import os

import numpy as np
import torch

from gradfaith_tui.config import CamSettings
from gradfaith_tui.data.prepared import SplitArrays
from gradfaith_tui.errors import CheckpointError, batch_size_on_out_of_memory
from gradfaith_tui.models.factory import load_checkpoint
from gradfaith_tui.store.keys import checkpoint_identity
from gradfaith_tui.store.records import ModelInfo
from gradfaith_tui.store.writer import CacheWriter


AHEAD_DEVICES = ("cuda",)  # where the next batch is queued before this one is written (tests add "cpu")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Segmentations:
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


class Job:
    """One checkpoint's work in precompute."""

    def __init__(self, ckpt, trained_elsewhere: str | None = None):
        """trained_elsewhere: the data or split it was trained on, where --force let it past them (provenance_gap)."""
        self.ckpt, self.is_ref = ckpt, False  # is_ref: set once the cache says which seeds it holds
        self.trained_elsewhere = trained_elsewhere
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
        from gradfaith_tui.cam.rollout import ROLLOUT_METHODS, check_rollout

        if cam.method in ROLLOUT_METHODS:  # rollout reads the attention, not the target layer
            check_rollout(self.model, cam.method, self.ckpt.model_id)
        else:
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
        writer.add_model(info, checkpoint_identity(card), card, self.trained_elsewhere)
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
