"""Training throughput (images/s) per architecture on the machine at hand, and what the paper protocol costs.

    python benchmarks/train_speed.py                       # the paper's five at 224 px on the CPU (slow)
    python benchmarks/train_speed.py --device cuda --compile
    python benchmarks/train_speed.py --archs resnet10t,tinynet_e --img-size 64
    python benchmarks/train_speed.py --protocol data/phantoms --device cuda   # the real `train`, timed

Prints figures, never asserts. The paper protocol is 50 epochs of about 714 training images (60% of 1,190).
The first mode times bare training steps on random tensors; --protocol runs the real training (validation,
precise BN, the per-epoch checkpoint writes) on a dataset, one architecture after another, into a scratch
folder, and prints each one's wall time beside the steps-only estimate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gradfaith_tui.config import PAPER_ARCHS, spec_for
from gradfaith_tui.models.factory import build


def measure(name: str, img_size: int, batch: int, steps: int, device: str, compile_: bool,
            graphs: bool = False, benchmark: bool = True) -> tuple[float, float, str]:
    """(images/s, the first step's seconds (cuDNN's kernel search, a graph's recording), on CUDA where a
    step's time goes: the GPU's kernel time beside the wall time)."""
    from gradfaith_tui.models.step_graph import GraphedTraining

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = cuda and benchmark  # as `train`
    torch.manual_seed(0)
    model = build(spec_for(name), img_size).to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else GraphedTraining(model) if graphs else model
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=cuda or None)
    x = torch.rand(batch, 1, img_size, img_size, device=dev)
    y = torch.randint(0, 3, (batch,), device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):  # as `train`
            loss = F.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t
    for _ in range(2 if not compile_ else 5):  # warm-up (and compilation)
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    wall = (time.perf_counter() - t) / steps
    note = f"; not graphed: {step_model.broken}" if graphs and step_model.broken else ""
    return batch / wall, first, (gpu_share(step, wall) if cuda else "") + note


def gpu_share(step, wall: float, n: int = 3) -> str:
    """The kernels' own time per step (torch.profiler) beside the wall time: near 100% the GPU sets the
    pace; far below, the host (launching kernels one by one) does, which CUDA graphs or compiling fix."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                step()
            torch.cuda.synchronize()
    except Exception as e:  # a figure missing, not the run
        return f"(profiler: {type(e).__name__}: {e})"
    ev = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    busy = sum(e.self_device_time_total for e in ev) / n / 1e6
    top = sorted(ev, key=lambda e: -e.self_device_time_total)[:2]
    names = ", ".join(f"{e.key[:40]} {e.self_device_time_total / n / 1e3:.1f} ms" for e in top)
    return f"GPU busy {busy * 1e3:.1f} of {wall * 1e3:.1f} ms a step ({busy / wall:.0%}); top: {names}"


def run_protocol(data: Path, archs: list[str], a) -> None:
    from gradfaith_tui.config import profile
    from gradfaith_tui.models.fit import FitEvents, fit_all
    from gradfaith_tui.models.train import CudaTuning, TrainConfig

    prof = profile("paper", epochs=a.epochs, img_size=a.img_size, batch_size=a.batch_size)
    cfg = TrainConfig(epochs=prof.epochs, batch_size=prof.batch_size, lr=prof.lr, img_size=prof.img_size,
                      device=a.device, compile=a.compile)
    starts: list[tuple[str, float]] = []
    epoch_s: dict[str, list[float]] = {}
    rows: dict[str, list[dict]] = {}
    steps: dict[str, int] = {}
    projections: dict[str, float] = {}

    def report(model_id: str, t: float, end: float) -> None:  # as each model finishes: a cut-off run still says
        e = epoch_s[model_id]
        last = f"first epoch {e[0]:.2f} s, last {e[-1]:.2f} s" if e else "no epoch finished"
        line = f"{model_id:24s} {end - t:7.1f} s wall   {sum(e):7.1f} s in epochs   {len(e)} epochs   {last}"
        if a.project and len(e) >= 2:  # the first epoch pays cuDNN's kernel search; the later ones are the rate
            # Saving stalls every epoch where a write outlasts the next epoch (ViT-B: 1 GB of weights and AdamW state)
            saves = [r.get("save_seconds", 0.0) for r in rows[model_id]]
            steady = (sum(e[1:]) + sum(saves[1:])) / (len(e) - 1)
            projected = (end - t) - sum(e) - sum(saves) + e[0] + saves[0] + steady * (a.project - 1)
            projections[model_id] = projected
            line += f"   -> {a.project} epochs about {projected:.0f} s"
        print(line, flush=True)
        later = rows[model_id][1:] or rows[model_id]
        if later:  # where a steady epoch's time goes
            mean = {k: sum(r.get(k, 0.0) for r in later) / len(later)
                    for k in ("steps_seconds", "bn_seconds", "val_seconds", "save_seconds")}
            n_img = steps[model_id] * prof.batch_size
            ips = f" ({n_img / mean['steps_seconds']:.0f} img/s)" if mean["steps_seconds"] else ""
            print(f"{'':24s} an epoch: steps {mean['steps_seconds']:.2f} s{ips}, precise BN {mean['bn_seconds']:.2f} s, "
                  f"validation {mean['val_seconds']:.2f} s, saving {mean['save_seconds']:.2f} s; steps "
                  f"{later[-1].get('steps_via', '?')}", flush=True)

    def start(model_id, epochs, batches):
        now = time.perf_counter()
        if starts:
            report(*starts[-1], now)
        else:
            print(f"{'data (decode, split)':24s} {now - t0:7.1f} s", flush=True)
        starts.append((model_id, now))
        epoch_s[model_id] = []
        rows[model_id] = []
        steps[model_id] = batches

    def epoch(model_id, e, row):
        epoch_s[model_id].append(row["seconds"])
        rows[model_id].append(row)

    events = FitEvents(start=start, epoch=epoch)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradfaith-protocol-") as tmp:
        fit_all(data, a.checkpoints or Path(tmp), [spec_for(n) for n in archs], [0], cfg, events=events,
                tuning=CudaTuning(graphs=not a.no_graphs, cudnn_benchmark=not a.no_benchmark))
        end = time.perf_counter()  # before the scratch checkpoints are deleted
    report(*starts[-1], end)
    total = end - t0
    print(f"{'all':24s} {total:7.1f} s wall = {total / 60:.2f} min   (paper protocol target: under 5 min on one H100/H200)")
    if projections:
        est = starts[0][1] - t0 + sum(projections.values())
        print(f"{'projected':24s} {est:7.1f} s = {est / 60:.2f} min for {a.project} epochs of the "
              f"{len(projections)} models above (data, first epoch and the measured later-epoch rate)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default=",".join(PAPER_ARCHS))
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--train-images", type=int, default=714)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--protocol", type=Path, help="dataset folder: time the real training on it instead")
    ap.add_argument("--project", type=int, default=0,
                    help="with --protocol: also project each model's time for this many epochs from the ones run")
    ap.add_argument("--checkpoints", type=Path, help="with --protocol: keep the checkpoints here (default: a scratch folder)")
    ap.add_argument("--no-graphs", action="store_true", help="eager training steps on CUDA (bare steps: graphs not tried)")
    ap.add_argument("--no-benchmark", action="store_true", help="cuDNN's heuristics instead of its per-shape kernel search")
    a = ap.parse_args()
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name} · {a.img_size} px · batch {a.batch_size} · torch {torch.__version__}")
    if a.protocol:
        return run_protocol(a.protocol, a.archs.split(","), a)
    total = 0.0
    for arch in a.archs.split(","):
        ips, first, share = measure(arch, a.img_size, a.batch_size, a.steps, a.device, a.compile, benchmark=not a.no_benchmark)
        protocol = a.epochs * a.train_images / ips
        total += protocol
        print(f"{arch:24s} {ips:9.1f} img/s   {a.epochs} epochs x {a.train_images} images: {protocol / 60:7.1f} min   "
              f"first step {first:.2f} s   {share}", flush=True)
        if a.device.startswith("cuda") and not (a.compile or a.no_graphs):  # replayed from CUDA graphs, as `train` runs them
            g_ips, g_first, g_share = measure(arch, a.img_size, a.batch_size, a.steps, a.device, False, graphs=True,
                                              benchmark=not a.no_benchmark)
            print(f"{'  CUDA graphs':24s} {g_ips:9.1f} img/s   {g_ips / ips:.2f}x the eager steps   first step "
                  f"{g_first:.2f} s   {g_share}", flush=True)
    print(f"{'all':24s} {'':9s}         paper protocol, 1 seed: {total / 60:7.1f} min (training steps only)")


if __name__ == "__main__":
    main()
