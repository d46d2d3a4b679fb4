"""Training one (architecture, seed): resumable epoch by epoch, best-on-validation selection, CSV curves."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gradfaith_tui.config import CLASS_NAMES, ModelSpec
from gradfaith_tui.data.prepared import SplitArrays
from gradfaith_tui.errors import CheckpointError
from gradfaith_tui.models.card import CARD_NAME, read_card
from gradfaith_tui.models.factory import IMAGENET_MEAN, IMAGENET_STD, build, load_weights, save_checkpoint, versions

STATE_NAME = "train_state.json"
LAST_NAME = "last.safetensors"
OPTIM_NAME = "optim.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    img_size: int
    weighted_loss: bool = False
    device: str = "cpu"
    pretrained_file: str | None = None
    compile: bool = False  # torch.compile the training forward (pays off on long GPU runs)


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, S, S) -> float (N, 1, S, S) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).unsqueeze(1).float().div_(255.0)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / len(CLASS_NAMES)
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def _validate(model, data: SplitArrays, batch_size: int, device) -> dict:
    model.eval()
    losses, correct = [], 0
    for i in range(0, len(data), batch_size):
        x = to_tensor(data.images[i:i + batch_size], device)
        y = torch.from_numpy(data.labels[i:i + batch_size]).to(device)
        logits = model(x)
        losses.append(F.cross_entropy(logits, y, reduction="sum").item())
        correct += (logits.argmax(1) == y).sum().item()
    return {"val_loss": sum(losses) / len(data), "val_acc": correct / len(data)}


@torch.no_grad()
def recalibrate_bn(model, data: SplitArrays, batch_size: int, device) -> None:
    """Re-estimate BatchNorm statistics on the training set with the final weights (precise BN).

    Small nets trained from scratch for few steps (EfficientNet's depthwise stages especially) carry
    running statistics that lag the weights, which wrecks eval-mode accuracy; a cumulative pass fixes it.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    for i in range(0, len(data), batch_size):
        model(to_tensor(data.images[i:i + batch_size], device))
    for m, mom in zip(bns, saved):
        m.momentum = mom


def is_complete(directory: Path, epochs: int, fingerprint: str) -> bool:
    try:
        card = read_card(directory)
    except CheckpointError:  # missing or unreadable card: not trained yet
        return False
    return card.get("epochs_done", 0) >= epochs and card.get("data_fingerprint") == fingerprint


def train(spec: ModelSpec, seed: int, train_data: SplitArrays, val_data: SplitArrays, cfg: TrainConfig,
          out: Path, provenance: dict, on_batch: Callable[[int, int, int, float], None] = lambda *a: None,
          on_epoch: Callable[[int, dict], None] = lambda *a: None) -> dict:
    """Train, saving after every epoch; a rerun resumes from the last finished epoch. Returns the card.

    Under torchrun each rank trains on its share of every batch (DistributedDataParallel); rank 0 saves.
    """
    from gradfaith_tui.models.distributed import from_env

    dist = from_env(cfg.device)
    device = torch.device(dist.device(cfg.device))
    cuda = device.type == "cuda"
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = build(spec, cfg.img_size, Path(cfg.pretrained_file) if cfg.pretrained_file else None).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * -(-len(train_data) // cfg.batch_size)),
                                                pct_start=0.15)
    state = {"epoch": 0, "best": None, "history": []}
    out.mkdir(parents=True, exist_ok=True)
    if (out / STATE_NAME).is_file() and (out / LAST_NAME).is_file():
        state = json.loads((out / STATE_NAME).read_text())
        if state.get("data_fingerprint") == provenance["data_fingerprint"] and state.get("config") == asdict(cfg):
            load_weights(model, out / LAST_NAME)
            saved = torch.load(out / OPTIM_NAME, map_location=device, weights_only=True)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        else:  # other data or settings: start over rather than mix runs
            state = {"epoch": 0, "best": None, "history": []}
    weights = class_weights(train_data.labels).to(device) if cfg.weighted_loss else None
    step_model = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    gen = torch.Generator().manual_seed(seed)
    card = {
        "name": spec.name, "arch": spec.arch, "family": spec.family, "kwargs": spec.kwargs, "describe": spec.describe(),
        "seed": seed, "img_size": cfg.img_size, "class_names": list(CLASS_NAMES),
        "input": "grey [0,1], repeated to RGB", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
        "epochs": cfg.epochs, "train_config": asdict(cfg), "world_size": dist.world, "versions": versions(), **provenance,
    }
    for epoch in range(state["epoch"], cfg.epochs):
        gen.manual_seed(seed * 1000 + epoch)  # the same order on resume as without the interrupt
        model.train()
        perm = torch.randperm(len(train_data), generator=gen).numpy()
        n_batches = -(-len(perm) // cfg.batch_size)
        t0, tot, correct, seen = time.perf_counter(), 0.0, 0, 0
        for b in range(n_batches):
            batch = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            flip = torch.rand(len(batch), generator=gen) < 0.5  # left/right flips: lesions occur in either lung
            if len(batch) < dist.world:  # every rank must take part in every step
                continue
            mine = slice(dist.rank, None, dist.world)
            idx, flip = batch[mine], flip[mine]
            x = to_tensor(train_data.images[idx], device)
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            y = torch.from_numpy(train_data.labels[idx]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = step_model(x)
            loss = F.cross_entropy(logits.float(), y, weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
            if dist.main:
                on_batch(epoch, b + 1, n_batches, loss.item())
        tot, correct, seen = dist.sum([tot, correct, seen])
        recalibrate_bn(model, train_data, max(cfg.batch_size, 32), device)  # same data and weights on every rank
        row = {"epoch": epoch + 1, "train_loss": tot / seen, "train_acc": correct / seen,
               **_validate(model, val_data, cfg.batch_size, device), "seconds": time.perf_counter() - t0}
        state["history"].append(row)
        best = state["best"]
        improved = best is None or (row["val_acc"], -row["val_loss"]) > (best["val_acc"], -best["val_loss"])
        if improved:
            state["best"] = row
        state["epoch"] = epoch + 1
        if not dist.main:
            dist.barrier()  # wait for rank 0's files, so every rank could resume from them
            continue
        # Order matters for resume: last weights and optimiser first, then the state that points at them.
        save_checkpoint(model, out, {}, LAST_NAME)
        torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, out / (OPTIM_NAME + ".tmp"))
        (out / (OPTIM_NAME + ".tmp")).replace(out / OPTIM_NAME)
        if improved:
            save_checkpoint(model, out, {**card, "epochs_done": epoch + 1, "best_epoch": epoch + 1,
                                         "best_val": {k: row[k] for k in ("val_acc", "val_loss")}})
        else:  # the card still records how far training got
            c = read_card(out)
            c["epochs_done"] = epoch + 1
            (out / (CARD_NAME + ".tmp")).write_text(json.dumps(c, indent=2, sort_keys=True))
            (out / (CARD_NAME + ".tmp")).replace(out / CARD_NAME)
        (out / (STATE_NAME + ".tmp")).write_text(json.dumps({**state, "data_fingerprint": provenance["data_fingerprint"],
                                                              "config": asdict(cfg)}, indent=1))
        (out / (STATE_NAME + ".tmp")).replace(out / STATE_NAME)
        _write_history(out / "history.csv", state["history"])
        dist.barrier()
        on_epoch(epoch + 1, row)
    dist.barrier()
    return read_card(out)


def _write_history(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
