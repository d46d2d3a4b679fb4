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


def measure(name: str, img_size: int, batch: int, steps: int, device: str, compile_: bool) -> float:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    model = build(spec_for(name), img_size).to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.rand(batch, 1, img_size, img_size, device=dev)
    y = torch.randint(0, 3, (batch,), device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if not compile_ else 6):  # warm-up (and compilation)
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t)


def run_protocol(data: Path, archs: list[str], a) -> None:
    from gradfaith_tui.config import profile
    from gradfaith_tui.models.fit import FitEvents, fit_all
    from gradfaith_tui.models.train import TrainConfig

    prof = profile("paper", epochs=a.epochs, img_size=a.img_size, batch_size=a.batch_size)
    cfg = TrainConfig(epochs=prof.epochs, batch_size=prof.batch_size, lr=prof.lr, img_size=prof.img_size,
                      device=a.device, compile=a.compile)
    starts: list[tuple[str, float]] = []
    epoch_s: dict[str, list[float]] = {}
    projections: dict[str, float] = {}

    def report(model_id: str, t: float, end: float) -> None:  # as each model finishes: a cut-off run still says
        e = epoch_s[model_id]
        last = f"first epoch {e[0]:.2f} s, last {e[-1]:.2f} s" if e else "no epoch finished"
        line = f"{model_id:24s} {end - t:7.1f} s wall   {sum(e):7.1f} s in epochs   {len(e)} epochs   {last}"
        if a.project and len(e) >= 2:  # the first epoch pays cuDNN's kernel search; the later ones are the rate
            steady = sum(e[1:]) / (len(e) - 1)
            projected = (end - t) - sum(e) + e[0] + steady * (a.project - 1)
            projections[model_id] = projected
            line += f"   -> {a.project} epochs about {projected:.0f} s"
        print(line, flush=True)

    def start(model_id, epochs, batches):
        now = time.perf_counter()
        if starts:
            report(*starts[-1], now)
        else:
            print(f"{'data (decode, split)':24s} {now - t0:7.1f} s", flush=True)
        starts.append((model_id, now))
        epoch_s[model_id] = []

    events = FitEvents(start=start, epoch=lambda m, e, row: epoch_s[m].append(row["seconds"]))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradfaith-protocol-") as tmp:
        fit_all(data, a.checkpoints or Path(tmp), [spec_for(n) for n in archs], [0], cfg, events=events)
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
    a = ap.parse_args()
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name} · {a.img_size} px · batch {a.batch_size} · torch {torch.__version__}")
    if a.protocol:
        return run_protocol(a.protocol, a.archs.split(","), a)
    total = 0.0
    for arch in a.archs.split(","):
        ips = measure(arch, a.img_size, a.batch_size, a.steps, a.device, a.compile)
        protocol = a.epochs * a.train_images / ips
        total += protocol
        print(f"{arch:24s} {ips:9.1f} img/s   {a.epochs} epochs x {a.train_images} images: {protocol / 60:7.1f} min")
    print(f"{'all':24s} {'':9s}         paper protocol, 1 seed: {total / 60:7.1f} min (training steps only)")


if __name__ == "__main__":
    main()
