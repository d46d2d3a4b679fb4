"""Classification evaluation: the paper's Table I metrics, confusion matrices and inference timing."""

from __future__ import annotations

import time

import numpy as np
import torch

from gradfaith_tui.models.precision import autocast
from gradfaith_tui.models.table1 import confusion, table1
from gradfaith_tui.models.train import to_tensor


@torch.no_grad()
def predict(model, images: np.ndarray, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, n_classes), at the precision precompute predicts with (bf16 on CUDA)."""
    model.eval()
    with autocast(device):
        out = [torch.softmax(model(to_tensor(images[i:i + batch_size], device)).float(), 1).cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def timing(model, img_size: int, device: str = "cpu", repeats: int = 20, batch: int = 32) -> dict:
    """Per-image latency at batch 1 (median after warm-up) and batched throughput, with the device named,
    at the precision the tool infers with (bf16 autocast on CUDA)."""
    model.eval()
    dev = torch.device(device)
    # The device the model runs on: torch.cuda.synchronize() alone waits on the current one, cuda:0.
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with autocast(dev):
        return _timed(model, img_size, dev, sync, repeats, batch)


def _timed(model, img_size: int, dev: torch.device, sync, repeats: int, batch: int) -> dict:
    x1 = torch.rand(1, 1, img_size, img_size, device=dev)
    xb = torch.rand(batch, 1, img_size, img_size, device=dev)
    for _ in range(3):
        model(x1)
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(x1)
        sync()
        times.append(time.perf_counter() - t)
    model(xb)
    sync()
    t = time.perf_counter()
    n_b = max(1, repeats // 10)
    for _ in range(n_b):
        model(xb)
    sync()
    thr = batch * n_b / (time.perf_counter() - t)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"latency_ms": float(np.median(times) * 1000), "throughput_ips": float(thr), "device": name}


def evaluate(model, images: np.ndarray, labels: np.ndarray, img_size: int, device: str = "cpu",
             with_timing: bool = True) -> tuple[np.ndarray, dict]:
    probs = predict(model, images, device=device)
    body = table1(confusion(labels, probs.argmax(1)))
    body["n"] = int(len(labels))
    if with_timing:
        body["timing"] = timing(model, img_size, device)
    return probs, body
