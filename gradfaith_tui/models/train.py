"""Training one (architecture, seed): resumable epoch by epoch, best-on-validation selection, CSV curves."""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gradfaith_tui.config import CLASS_NAMES, ModelSpec
from gradfaith_tui.data.prepared import SplitArrays
from gradfaith_tui.errors import TrainingError
from gradfaith_tui.models.card import (CARD_NAME, NEXT_CARD_NAME, WEIGHTS_NAME, file_hash, read_card,
                                       replace_atomically, settle_card, write_card_file)
from gradfaith_tui.models.epoch_saver import STATE_NAME, EpochSaver, link_or_copy, optim_name, weights_name
from gradfaith_tui.models import precision
from gradfaith_tui.models.precision import autocast, to_device
from gradfaith_tui.models.resume import drop_resume_files, resume_point
from gradfaith_tui.models.step_graph import GraphedTraining
from gradfaith_tui.models.factory import (IMAGENET_MEAN, IMAGENET_STD, build, load_weights, save_weights, versions,
                                          write_card)

RESIDENT_BYTES = 4 << 30  # a split up to this size lives on the GPU for the whole run


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


@dataclass(frozen=True)
class CudaTuning:
    """How steps run on a GPU; not part of TrainConfig, since they change speed, not the recipe, and a
    resumed run may take other settings."""

    graphs: bool = True  # forward and backward replayed from CUDA graphs (models/step_graph.py)
    cudnn_benchmark: bool = True  # cuDNN searches the fastest kernels per shape, on first use


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S) -> float (N, 1, S, S) in [0, 1], where the tensor is."""
    return images.unsqueeze(1).float().div_(255.0)


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, S, S) array -> float (N, 1, S, S) in [0, 1] on device."""
    return to_unit(torch.from_numpy(np.ascontiguousarray(images)).to(device))


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches only (as timm's training loader), where there is one: a short last batch is another
    shape for cuDNN's benchmark mode to search kernels for (on an H200, most of a first epoch's time),
    and each epoch's shuffle leaves out other images."""
    return max(1, n_images // batch_size)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / len(CLASS_NAMES)
    return torch.tensor(w, dtype=torch.float32)


class DeviceSplit:
    """A split as uint8 tensors, on the GPU when it fits (36 MB for 714 slices at 224 px): batches are then
    gathered there, with no host copy per step."""

    def __init__(self, data: SplitArrays, device: torch.device):
        self.device = device
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))
        self.labels = torch.from_numpy(np.ascontiguousarray(data.labels)).long()
        if device.type == "cuda" and self.images.nbytes <= RESIDENT_BYTES:
            self.images, self.labels = self.images.to(device), self.labels.to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.images.device)
        x = to_unit(self.images[idx].to(self.device, non_blocking=True))
        return x, self.labels[idx].to(self.device, non_blocking=True)

    def spread_batches(self, size: int, limit: int):
        """Full batches of up to `limit` images spread evenly over the split (all of it where it is smaller)."""
        n = min(len(self), max(limit, size))
        n = steps_per_epoch(n, size) * size if n >= size else n
        idx = torch.linspace(0, len(self) - 1, n).round().long() if n < len(self) else torch.arange(n)
        for i in range(0, n, size):
            yield self.batch(idx[i:i + size])

    def batches(self, size: int):
        """In order, the last one short where the split does not divide."""
        for i in range(0, len(self), size):
            yield self.batch(torch.arange(i, min(i + size, len(self))))


@torch.no_grad()
def _validate(model, data: DeviceSplit, batch_size: int, pad: bool | None = None) -> dict:
    model.eval()
    loss, correct = torch.zeros((), device=data.device), torch.zeros((), device=data.device)
    if pad is None:  # on CUDA one batch shape: cuDNN's benchmark mode searches kernels for each new one
        pad = data.device.type == "cuda"
    for x, y in data.batches(batch_size):
        n = len(x)
        if pad and n < batch_size:  # eval mode: the zero rows change nothing in the real ones
            x = torch.cat([x, x.new_zeros((batch_size - n, *x.shape[1:]))])
        with autocast(data.device):
            logits = model(x)[:n].float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return {"val_loss": loss.item() / len(data), "val_acc": correct.item() / len(data)}


PRECISE_BN_IMAGES = 256  # a sample, as Detectron2's PreciseBN takes: the statistics settle well before


@torch.no_grad()
def recalibrate_bn(model, data: DeviceSplit, batch_size: int, limit: int = PRECISE_BN_IMAGES) -> None:
    """Re-estimate BatchNorm statistics with the epoch's final weights (precise BN), on up to `limit`
    training images spread evenly over the split.

    Small nets trained from scratch for few steps (EfficientNet's depthwise stages especially) carry
    running statistics that lag the weights, which wrecks eval-mode accuracy; a cumulative pass fixes it.
    With the steps replayed from CUDA graphs this plain pass cost as much as the steps (H200, ResNet-101,
    all 714 images: 0.55 s an epoch against 0.38 s), hence the sample.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    model.train()
    for i, (x, _) in enumerate(data.spread_batches(batch_size, limit), 1):  # full batches: no new kernel search
        for m in bns:  # 1/i: the cumulative average (momentum=None's) without its host read of a counter per layer
            m.momentum = 1.0 / i
        with autocast(data.device):  # the statistics of the activations training produces
            model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom


def _write_epoch(out: Path, slot: str, weights: dict, optim: dict, state: dict, best_card: dict | None) -> None:
    """One epoch's files, in the order resume relies on: the slot's weights and optimiser (side by side:
    ViT-B's 0.3 and 0.7 GB took 1.2-1.4 s so against 1.7-1.9 s one after the other, on our 2-core VM), the best
    checkpoint and card, then the state file that points at the slot (its rename is the commit)."""
    with ThreadPoolExecutor(1, thread_name_prefix="optim-writer") as pool:
        optim_written = pool.submit(replace_atomically, out / optim_name(slot), lambda tmp: torch.save(optim, tmp))
        save_weights(weights, out / weights_name(slot), {"epoch": str(state["epoch"])})
        # A new best's hash (its card's identity), read back while the optimiser's larger file is still being
        # written rather than after it (ViT-B: 0.3 GB to hash, half a second).
        digest = file_hash(out / weights_name(slot)) if best_card is not None else None
        optim_written.result()  # a failed write surfaces here, before anything points at the slot
    _write_history(out / "history.csv", state["history"])  # before the card: a card that says done has its curves
    if best_card is not None:  # card waiting, weights in place, card renamed: never a card naming other weights
        write_card(out, best_card, digest, NEXT_CARD_NAME)
        link_or_copy(out / weights_name(slot), out / WEIGHTS_NAME)  # the same bytes, so the same hash
        (out / NEXT_CARD_NAME).replace(out / CARD_NAME)
    else:  # the card still records how far training got
        write_card_file(out, {**read_card(out), "epochs_done": state["epoch"]})
    replace_atomically(out / STATE_NAME, lambda tmp: tmp.write_text(json.dumps(state, indent=1)))


def _discard_run(out: Path) -> None:
    """--restart: the saved epochs' resume point and curves go; the best checkpoint and its card stay until the
    new run's first epoch replaces them."""
    drop_resume_files(out)
    (out / STATE_NAME).unlink(missing_ok=True)
    (out / "history.csv").unlink(missing_ok=True)


def train(spec: ModelSpec, seed: int, train_data: SplitArrays, val_data: SplitArrays, cfg: TrainConfig,
          out: Path, provenance: dict, on_batch: Callable[[int, int, int, float], None] = lambda *a: None,
          on_epoch: Callable[[int, dict], None] = lambda *a: None, tuning: CudaTuning = CudaTuning(),
          restart: bool = False) -> dict:
    """Train, saving after every epoch; a rerun resumes from the last finished epoch. Returns the card.

    A rerun with other settings or data stops with a TrainingError (resume_point) unless restart says to
    train from scratch, discarding the saved epochs.

    Under torchrun each rank trains on its share of every batch (DistributedDataParallel); rank 0 saves.
    On one GPU the steps' forward and backward replay CUDA graphs (models/step_graph.py), as tuning says.
    """
    from gradfaith_tui.models.distributed import from_env

    dist = from_env(cfg.device)
    device = torch.device(dist.device(cfg.device))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = tuning.cudnn_benchmark  # fixed input size: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts outside autocast
    if dist.main:
        settle_card(out)  # a best's card a stopped run left waiting
    resumed = resume_point(out, cfg, provenance, restart)  # before any work: a conflict stops here
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = to_device(build(spec, cfg.img_size, Path(cfg.pretrained_file) if cfg.pretrained_file else None), device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05, fused=cuda or None)
    total = cfg.epochs * steps_per_epoch(len(train_data), cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                pct_start=0.15)
    state = {"epoch": 0, "best": None, "history": []}
    if resumed is not None:
        load_weights(model, out / weights_name(resumed.get("slot", "")))
        optim_file = out / optim_name(resumed.get("slot", ""))
        try:
            saved = torch.load(optim_file, map_location=device, weights_only=True)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        except Exception as exc:  # truncated, another format, another run's: name it rather than a traceback
            raise TrainingError(f"{optim_file}: unreadable optimiser state ({exc.__class__.__name__}); restore it, "
                                f"or pass --restart to train from scratch (the finished epochs are discarded)") from None
        state = resumed
    elif restart and dist.main:
        _discard_run(out)
    dist.barrier()  # no rank reads what rank 0 is discarding
    state = {**state, "data_fingerprint": provenance["data_fingerprint"], "split_hash": provenance.get("split_hash"),
             "split_seed": provenance.get("split_seed"), "config": asdict(cfg)}
    weights = class_weights(train_data.labels).to(device) if cfg.weighted_loss else None
    train_set, val_set = DeviceSplit(train_data, device), DeviceSplit(val_data, device)
    step_model = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    elif tuning.graphs and device.type in precision.GRAPH_DEVICES and dist.world == 1:
        step_model = GraphedTraining(model)
    gen = torch.Generator().manual_seed(seed)
    card = {
        "name": spec.name, "arch": spec.arch, "family": spec.family, "kwargs": spec.kwargs, "describe": spec.describe(),
        "seed": seed, "img_size": cfg.img_size, "class_names": list(CLASS_NAMES),
        "input": "grey [0,1], repeated to RGB", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
        "epochs": cfg.epochs, "train_config": asdict(cfg), "world_size": dist.world, "versions": versions(),
        **{k: v for k, v in provenance.items() if k != "data_aliases"},
    }
    saver = EpochSaver(background=cuda) if dist.main else None
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            row = _train_epoch(step_model, model, opt, sched, train_set, val_set, cfg, weights, gen, seed, epoch, dist,
                               on_batch)
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])):
                # Saving this epoch would put NaN weights in the resume slot; the finished ones stay.
                kept = ("no finished epoch is kept" if epoch == 0 else "epoch 1 is kept" if epoch == 1
                        else f"epochs 1-{epoch} are kept")
                raise TrainingError(f"{out}: training diverged in epoch {epoch + 1} (loss {row['train_loss']}, "
                                    f"validation loss {row['val_loss']}); {kept}; try a lower --lr (now {cfg.lr})")
            state["history"] = [*state["history"], row]
            best = state["best"]
            improved = best is None or (row["val_acc"], -row["val_loss"]) > (best["val_acc"], -best["val_loss"])
            if improved:
                state["best"] = row
            state["epoch"] = epoch + 1
            t_save = time.perf_counter()
            if saver is not None:
                state["slot"] = saver.next_slot(state)
                snap_w, snap_o = saver.snapshot(model.net.state_dict(), {"opt": opt.state_dict(), "sched": sched.state_dict()})
                best_card = ({**card, "epochs_done": epoch + 1, "best_epoch": epoch + 1,
                              "best_val": {k: row[k] for k in ("val_acc", "val_loss")}} if improved else None)
                saver.submit(_write_epoch, out, state["slot"], snap_w, snap_o, copy.deepcopy(state), best_card)
            # What saving held training up (the copy off the device; inline on the CPU, the write too)
            on_epoch(epoch + 1, {**row, "save_seconds": time.perf_counter() - t_save, "steps_via": _via(step_model)})
        if saver is not None:
            saver.wait()
            drop_resume_files(out)
    finally:
        if saver is not None:
            saver.close()  # an interrupt still leaves the finished epochs on disk
    dist.barrier()  # every rank sees rank 0's files before it returns
    return read_card(out)


def _train_epoch(step_model, model, opt, sched, train_set: DeviceSplit, val_set: DeviceSplit, cfg: TrainConfig,
                 weights, gen: torch.Generator, seed: int, epoch: int, dist, on_batch) -> dict:
    gen.manual_seed(seed * 1000 + epoch)  # the same order on resume as without the interrupt
    model.train()
    device = train_set.device
    perm = torch.randperm(len(train_set), generator=gen)
    n_batches = steps_per_epoch(len(perm), cfg.batch_size)
    t0 = time.perf_counter()
    # Running sums stay on the device: no host sync per step, so the CPU queues the next step meanwhile.
    tot, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    prev = None
    for b in range(n_batches):
        batch = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        flip = torch.rand(len(batch), generator=gen) < 0.5  # left/right flips: lesions occur in either lung
        if len(batch) < dist.world:  # every rank must take part in every step
            continue
        idx, flip = batch[dist.rank::dist.world], flip[dist.rank::dist.world]
        x, y = train_set.batch(idx)
        x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
        with autocast(device, cache=False):  # CUDA graphs cannot keep autocast's weight cache (a CNN casts once anyway)
            logits = step_model(x)
        loss = F.cross_entropy(logits.float(), y, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tot += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        if dist.main:  # the bar shows the previous step's loss: reading it waits for that step, not this one
            on_batch(epoch, b + 1, n_batches, (prev if prev is not None else loss).item())
        prev = loss.detach()
    tot, correct, seen = dist.sum([tot.item(), correct.item(), seen])  # waits for the last step
    t1 = time.perf_counter()
    recalibrate_bn(model, train_set, max(cfg.batch_size, 32))  # same data and weights on every rank
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # once an epoch, so the curves say where an epoch's time goes
    t2 = time.perf_counter()
    val = _validate(model, val_set, cfg.batch_size)
    t3 = time.perf_counter()
    return {"epoch": epoch + 1, "train_loss": tot / seen, "train_acc": correct / seen, **val, "seconds": t3 - t0,
            "steps_seconds": t1 - t0, "bn_seconds": t2 - t1, "val_seconds": t3 - t2}


NO_GRAPH = "plain steps, no graph: "  # how an epoch row's steps_via begins where graphs failed to record


def _via(step_model) -> str:
    """How the steps ran, for benchmarks and logs."""
    if isinstance(step_model, GraphedTraining):
        return "CUDA graphs" if step_model.recorded else f"{NO_GRAPH}{step_model.broken}"
    return "eager"


def _write_history(path: Path, history: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(history[0]))
            w.writeheader()
            w.writerows(history)
    replace_atomically(path, write)  # a kill mid-write leaves the last whole curves, never an empty file
