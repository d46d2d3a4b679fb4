"""Grad-CAM throughput: pytorch-grad-cam one image at a time, the library batched, and our fused engine
(Grad-CAM kept on the device, Faith's masked forward following with no host round trip), side by side in
one run, plus end-to-end precompute.

    python benchmarks/cam_speed.py                          # CPU, demo-size models at 64 px
    python benchmarks/cam_speed.py --device cuda --img-size 224 --archs resnet50,resnet101,densenet161,efficientnet_b0,vit_base_patch16_224

Prints images/s and ratios; never asserts. The library figures include a plain forward for Faith, which it
does not fuse, so all three columns do the same work: one map and one Faith value per image.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from gradfaith_tui.cam.fast_gradcam import FastGradCAM
from gradfaith_tui.cam.layers import find
from gradfaith_tui.cam.methods import cam_batch, upsample
from gradfaith_tui.config import DEMO_SPECS, spec_for
from gradfaith_tui.metrics.faithfulness import faith
from gradfaith_tui.models.factory import build
from gradfaith_tui.models.precision import to_device


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def library(model, layer, x, batch: int, device: str) -> float:
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        maps, logits = cam_batch(model, layer, xb, np.zeros(len(xb), dtype=np.int64))
        faith(model, xb, logits.to(xb.device), upsample(maps, xb.shape[-1]).to(xb.device),
              torch.zeros(len(xb), dtype=torch.long, device=xb.device))
    _sync(device)
    return len(x) / (time.perf_counter() - t)


def fused(f: FastGradCAM, x, batch: int, device: str) -> float:
    """f: an entered engine; its set-up (hooks, or the folded trunk: once per model) is not timed."""
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        ex = f(xb)  # maps stay on the device: the masked forward follows with no host round trip
        faith(f.forward, xb, ex.logits, upsample(ex.maps, xb.shape[-1]), ex.targets)  # the folded trunk too
    _sync(device)
    return len(x) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default=",".join(s.name for s in DEMO_SPECS))
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--n", type=int, default=64, help="images per measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--e2e", nargs=2, metavar=("DATA", "CHECKPOINTS"),
                    help="also time a whole precompute (decode, CAM, every default metric, cache writes) of these")
    ap.add_argument("--compile", action="store_true",
                    help="also the engine with its trunk through torch.compile (precompute --compile), with the "
                         "compile time, and --e2e so too")
    ap.add_argument("--wider", default="", metavar="B1,B2",
                    help="also the engine at these batch sizes: what a wider batch is worth per image (precompute "
                         "sends a batch's three edits through the trunk as one pass of 3x its rows)")
    ap.add_argument("--e2e-archs", default="", metavar="A,B",
                    help="--e2e of these architectures' checkpoints only (default: every one in the folder)")
    ap.add_argument("--profile", action="store_true",
                    help="--e2e under torch.profiler: where the device's and the host's time goes, by operator "
                         "(the rates then carry the profiler's overhead; the run is a diagnosis, not a figure)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="cuDNN searches kernels per shape (for the library and the engine alike) instead of its heuristics")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name} · {a.img_size} px · {a.n} images · batch {a.batch_size} · torch {torch.__version__}"
          + (" · cuDNN kernel search on" if a.cudnn_benchmark else ""))
    if a.archs:
        print(f"{'model':22s} {'lib 1-by-1':>11s} {'lib batched':>12s} {'fused':>9s} {'fused/batched':>14s} {'fused/1-by-1':>13s}")
    for arch in filter(None, a.archs.split(",")):  # --archs "" runs only --e2e
        model = to_device(build(spec_for(arch), a.img_size), dev).eval()  # channels_last on CUDA, for both
        layer = find(model.net)
        x = torch.rand(a.n, 1, a.img_size, a.img_size, device=dev)
        library(model, layer, x[:2], 1, a.device)  # warm-ups: cuDNN picks its kernels per shape on first use
        library(model, layer, x[: a.batch_size], a.batch_size, a.device)
        one = library(model, layer, x[: max(4, a.n // 8)], 1, a.device)
        lib = library(model, layer, x, a.batch_size, a.device)
        with FastGradCAM(model, layer) as f:
            fused(f, x[: a.batch_size], a.batch_size, a.device)  # warm-up (on CUDA, the graph's recording)
            fast = fused(f, x, a.batch_size, a.device)
            path = _path(f)
            graphed = f.split is not None and f.split.graphed is not None and f.split.graphed.recorded
            first = f(x[: a.batch_size]).maps if graphed else None
        print(f"{arch:22s} {one:9.1f}/s {lib:10.1f}/s {fast:7.1f}/s {fast / lib:13.2f}x {fast / one:12.2f}x   {path}")
        for wide in [int(b) for b in filter(None, a.wider.split(","))]:
            with FastGradCAM(model, layer) as f:
                fused(f, x[:wide], wide, a.device)  # warm-up (on CUDA, the graphs' recording)
                rate = fused(f, x, wide, a.device)
            print(f"{'  at batch ' + str(wide):22s} {'':11s} {'':12s} {rate:7.1f}/s {rate / lib:13.2f}x   "
                  f"{rate / fast:.2f}x the engine at batch {a.batch_size}")
        if graphed:  # the same engine without the graph: what the graph is worth, and that it computes the same
            with FastGradCAM(model, layer, graphs=False) as f:
                fused(f, x[: a.batch_size], a.batch_size, a.device)
                eager = fused(f, x, a.batch_size, a.device)
                plain = f(x[: a.batch_size]).maps
            print(f"{'  without the graph':22s} {'':11s} {'':12s} {eager:7.1f}/s {eager / lib:13.2f}x   graph "
                  f"{fast / eager:.2f}x, maps Pearson r >= {_agreement(first, plain):.4f} graphed vs not")
        if a.compile:
            with FastGradCAM(model, layer, graphs=False) as f:
                plain = f(x[: a.batch_size]).maps
            with FastGradCAM(model, layer, compile=True) as f:
                t = time.perf_counter()
                fused(f, x[: a.batch_size], a.batch_size, a.device)  # compiles (and records the graph)
                took = time.perf_counter() - t
                comp = fused(f, x, a.batch_size, a.device)
                maps, path = f(x[: a.batch_size]).maps, _path(f)
            print(f"{'  compiled':22s} {'':11s} {'':12s} {comp:7.1f}/s {comp / lib:13.2f}x   {path}: {comp / fast:.2f}x "
                  f"the engine above, compiling {took:.0f} s, maps Pearson r >= {_agreement(maps, plain):.4f} vs plain")
    if a.e2e:
        end_to_end(*a.e2e, a.device, a.batch_size, a.compile, [s for s in a.e2e_archs.split(",") if s], a.profile)


def _profiler(cuda: bool):
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))


def _print_profile(prof, cuda: bool) -> None:
    table = prof.key_averages()
    if cuda:
        print("\nprofile: operators by the device's own time")
        print(table.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60))
    print("\nprofile: operators by the host's own time")
    print(table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def _path(f: FastGradCAM) -> str:
    """How an entered engine's trunk runs (cam/split.py): folded, compiled, graphed..., or the hook."""
    return f.split.path if f.split is not None else "hook"


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """The lowest Pearson r between corresponding maps (flat ones, with no r, left out)."""
    r = torch.corrcoef(torch.stack([a.flatten(1).float(), b.flatten(1).float()], 1).flatten(0, 1))
    pairs = r.diagonal(1)[::2]
    return pairs[~pairs.isnan()].min().item() if (~pairs.isnan()).any() else float("nan")


def _device_clock(pending_cls, engine_cls, undo: list, current: list) -> dict[str, list[tuple[float, float]]]:
    """Per model, the device's own milliseconds for each batch: from a timing event queued before its CAM pass to
    one queued after its read-back copies, with a third between the CAM pass and the metrics. The device runs one
    batch after another on one stream, so these span its work on that batch whether it or the host sets the pace:
    near the host's ms per batch, the device is the limit; well below it, the host (or a hidden wait in it) is."""
    out: dict[str, list[tuple[float, float]]] = {}
    marks: list = []  # (start, after the CAM pass) of the batch being launched
    call, init, wait = engine_cls.__call__, pending_cls.__init__, pending_cls.wait
    undo += [lambda: setattr(engine_cls, "__call__", call), lambda: setattr(pending_cls, "__init__", init),
             lambda: setattr(pending_cls, "wait", wait)]

    def event() -> torch.cuda.Event:
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def timed_call(self, *a, **k):
        start = event()
        ex = call(self, *a, **k)
        marks.append((start, event()))
        return ex

    def timed_init(self, *a, **k):
        init(self, *a, **k)
        self._clock = (*marks[-1], event()) if marks else None  # the batch just launched (a set-up call leaves one too)
        marks.clear()

    def timed_wait(self):
        r = wait(self)
        if getattr(self, "_clock", None):
            start, cam, end = self._clock
            end.synchronize()
            out.setdefault(current[0], []).append((start.elapsed_time(end), start.elapsed_time(cam)))
        return r

    engine_cls.__call__, pending_cls.__init__, pending_cls.wait = timed_call, timed_init, timed_wait
    return out


def end_to_end(data: str, checkpoints: str, device: str, batch: int, compile: bool = False, archs: list[str] = (),
               profile: bool = False) -> None:
    """Images/s of each model's explain phase in a fresh precompute (Table I timing and sanity checks off),
    beside the fused engine's rate for the same checkpoint, input size and batch, measured right after
    (compile: both with the trunk through torch.compile; its first batch, which compiles, is left out)."""
    import tempfile
    from pathlib import Path

    from gradfaith_tui.config import CamSettings
    from gradfaith_tui.models.factory import load_checkpoint
    from gradfaith_tui.models.registry import find_checkpoints
    from gradfaith_tui.pipeline import precompute

    marks: dict[str, list[tuple[float, int]]] = {}
    phases: dict[str, list[tuple[float, str, float]]] = {}  # per model: (start, phase, seconds)
    current = [""]

    cuda = torch.device(device).type == "cuda"
    alloc: dict[str, list[tuple[float, tuple[int, ...]]]] = {}  # per model: (time, allocator counters) per batch
    counters = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams")

    def progress(model_id: str, done: int, total: int) -> None:
        marks.setdefault(model_id, []).append((time.perf_counter(), done))
        current[0] = model_id
        if cuda:  # a cudaMalloc or cudaFree in steady batches stalls the host until the device drains
            stats = torch.cuda.memory_stats()
            alloc.setdefault(model_id, []).append((time.perf_counter(), tuple(stats.get(k, 0) for k in counters)))

    undo = []

    def clocked(owner, name: str, phase: str) -> None:  # where each batch's host time goes, per model
        inner = getattr(owner, name)
        undo.append(lambda: setattr(owner, name, inner))

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases.setdefault(current[0], []).append((t, phase, time.perf_counter() - t))
        setattr(owner, name, timed)

    from gradfaith_tui.metrics import per_case, readback, staging
    from gradfaith_tui.store.writer import CacheWriter

    clocked(readback.Pending, "wait", "wait")  # the read-back waits for the device to finish the batch
    clocked(staging.Stager, "__call__", "stage")
    clocked(CacheWriter, "write_batch", "write")
    # Launching a batch's work: the CAM pass (fast engine), then the metrics with their edits' pass. On a GPU
    # both only queue kernels, so a large figure is host time (or a hidden wait inside a CUDA call).
    clocked(FastGradCAM, "__call__", "cam")
    clocked(per_case, "device_metrics", "metrics")
    device_ms = _device_clock(readback.Pending, FastGradCAM, undo, current) if torch.device(device).type == "cuda" else {}
    import gradfaith_tui.pipeline as pipeline

    clocked(pipeline.job.Segmentations, "get", "segment")  # once per input size, before the first batch: left out

    paths: dict[str, str] = {}  # how each model's trunk ran inside precompute (folded, graphed, hook...)
    leave = FastGradCAM.__exit__

    def noted_exit(self, *exc):
        if current[0] and current[0] not in paths:
            paths[current[0]] = _path(self)
        return leave(self, *exc)
    FastGradCAM.__exit__ = noted_exit

    from gradfaith_tui.errors import CheckpointError

    names = []
    for c in find_checkpoints(Path(checkpoints)):  # a broken checkpoint is named here, not fatal to the rest
        try:
            load_checkpoint(c.directory, force=True)
            if not archs or c.card["arch"] in archs:
                names.append(c.card["name"])
        except CheckpointError as e:
            print(f"left out: {e}")
    import warnings

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as syncs:
        warnings.simplefilter("always")
        if cuda:  # every operation that makes the host wait for the GPU, named by where it is called
            torch.cuda.set_sync_debug_mode("warn")
        t = time.perf_counter()
        prof = _profiler(cuda) if profile else contextlib.nullcontext()
        with prof:
            # force: the checkpoints may come from another (smaller) set; this is a speed run, not an audit.
            precompute(Path(data), Path(checkpoints), Path(tmp) / "cache", names=names, cam=CamSettings(batch_size=batch, sanity_cases=0, compile=compile),
                       device=device, force=True, with_timing=False, warn=lambda m: None, progress=progress)
        total = time.perf_counter() - t
        for u in reversed(undo):  # the last wrapper first
            u()
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    n_cases = max(m[-1][1] for m in marks.values())
    print(f"\nend to end precompute of {data} ({n_cases} test cases x {len(marks)} models): {total:.1f} s in all, "
          f"{n_cases * len(marks) / total:.1f} maps/s (start-up, decode, segmentation, Consist included)")
    print("e2e: CAM, Faith, every metric, counterfactual re-forwards, cache writes, from the end of the first batch "
          "(steady: without the last, smaller batch either); set-up: entering the engine and the first batch (folding, "
          "graph recording, kernel planning); host ms per steady batch: waiting for the device, staging the next "
          "batch, writing the cache, launching the CAM pass, launching the metrics (their edits' pass among them), "
          "the rest (on a CPU the launches are the work itself)")
    print(f"{'model':22s} {'end to end':>11s} {'steady':>9s} {'engine':>10s} {'e2e/engine':>11s} {'steady/eng':>11s} "
          f"{'set-up s':>9s} {'last ms':>8s}   {'wait':>5s} {'stage':>6s} {'write':>6s} {'cam':>6s} {'metric':>6s} {'rest':>6s}")
    dev = torch.device(device)
    for c in find_checkpoints(Path(checkpoints)):
        m = marks.get(c.model_id)
        if not m or len(m) < 2:
            continue
        (t0, d0), (t1, d1) = m[1] if len(m) > 2 else m[0], m[-1]  # from the end of the first (warm-up) batch
        e2e = (d1 - d0) / (t1 - t0)
        model, card = load_checkpoint(c.directory, force=True)
        model = to_device(model, dev).eval()
        x = torch.rand(min(512, max(batch, d1 - d0)), 1, card["img_size"], card["img_size"], device=dev)
        layer = find(model.net)
        with FastGradCAM(model, layer, compile=compile) as f:
            fused(f, x[:batch], batch, device)  # warm-up
            engine = fused(f, x, batch, device)
        # Steady batches: after the first (set-up) and before the last (smaller; before padding into the recorded
        # graph it was a new shape, whose kernel planning cost EfficientNet-B0 seconds). A big "write" or "rest"
        # on a GPU means the device idles.
        setup = m[1][0] - m[0][0] if len(m) > 2 else float("nan")
        last = (m[-1][0] - m[-2][0]) * 1e3 if len(m) > 3 else float("nan")
        lo, hi = (m[1], m[-2]) if len(m) > 3 else (m[0], m[-1])
        steady = (hi[1] - lo[1]) / (hi[0] - lo[0])
        nb = max(1, len([k for k in m if lo[0] < k[0] <= hi[0]]))
        inside = [(ph, sec) for start, ph, sec in phases.get(c.model_id, []) if lo[0] <= start < hi[0]]
        host = {name: sum(sec for ph, sec in inside if ph == name) / nb * 1e3 for name in ("wait", "stage", "write", "cam", "metrics")}
        rest = (hi[0] - lo[0]) / nb * 1e3 - sum(host.values())
        dev_ms = device_ms.get(c.model_id, [])[1:-1] or device_ms.get(c.model_id, [])  # steady batches, as above
        gpu = (f"   device ms per batch: {np.median([d[0] for d in dev_ms]):.1f} (CAM pass {np.median([d[1] for d in dev_ms]):.1f}, "
               f"metrics {np.median([d[0] - d[1] for d in dev_ms]):.1f}; median of {len(dev_ms)})") if dev_ms else ""
        steady_alloc = [a for t, a in alloc.get(c.model_id, []) if lo[0] <= t <= hi[0] + 1e-3]
        if len(steady_alloc) > 1:
            d = [b - a for a, b in zip(steady_alloc[0], steady_alloc[-1])]
            gpu += (f"   allocator in steady batches: {d[0]} cudaMalloc, {d[1]} cudaFree, {d[2]} retries, "
                    f"{d[3]} syncs for frees")
        print(f"{c.model_id:22s} {e2e:9.1f}/s {steady:7.1f}/s {engine:8.1f}/s {e2e / engine:10.2f}x {steady / engine:10.2f}x "
              f"{setup:9.2f} {last:8.1f}   {host['wait']:5.1f} {host['stage']:6.1f} {host['write']:6.1f} {host['cam']:6.1f} {host['metrics']:6.1f} {rest:6.1f}   "
              f"{paths.get(c.model_id, '?')}{gpu}")
    if profile:
        _print_profile(prof, cuda)
    sites: dict[str, int] = {}
    for w in syncs:
        if "synchroniz" in str(w.message):
            site = f"{Path(w.filename).name}:{w.lineno}"
            sites[site] = sites.get(site, 0) + 1
    if cuda:
        print("host waits for the GPU (torch.cuda sync debug), by call site: "
              + (", ".join(f"{k} x{v}" for k, v in sorted(sites.items(), key=lambda kv: -kv[1])[:12]) or "none"))


if __name__ == "__main__":
    main()
