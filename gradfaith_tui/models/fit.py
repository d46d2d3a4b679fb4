"""Train every requested (architecture, seed) on one dataset and split, skipping finished checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gradfaith_tui.config import CLASS_NAMES, ModelSpec
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import load_split, prepare
from gradfaith_tui.errors import TrainingError, batch_size_on_out_of_memory
from gradfaith_tui.locks import tidy_lock, writer_lock
from gradfaith_tui.models.card import CARD_NAME, adopt_fingerprint, settle_card
from gradfaith_tui.models.epoch_saver import STATE_NAME
from gradfaith_tui.models.factory import check_arch, checkpoint_dir
from gradfaith_tui.models.resume import finished_differences, is_complete, resume_point, tidy_finished
from gradfaith_tui.models.train import CudaTuning, TrainConfig, steps_per_epoch, train


@dataclass
class FitEvents:
    """Callbacks the CLI turns into progress bars; all optional."""

    warn: Callable[[str], None] = lambda msg: None
    start: Callable[[str, int, int, int], None] = lambda model_id, epochs, batches, done: None  # done: resumed after
    batch: Callable[[str, int, int, int, float], None] = lambda model_id, epoch, b, n, loss: None
    epoch: Callable[[str, int, dict], None] = lambda model_id, epoch, row: None
    skip: Callable[[str], None] = lambda model_id: None


def fit_all(data: Path, checkpoints: Path, specs: list[ModelSpec], seeds: list[int], cfg: TrainConfig,
            split_seed: int = 0, strict: bool = False, events: FitEvents = FitEvents(),
            tuning: CudaTuning = CudaTuning(), restart: bool = False,
            window: tuple[float, float] | None = None) -> list[Path]:
    """restart: train from scratch, discarding saved epochs, an unfinished run's and a finished checkpoint's
    trained with other settings (one trained with these is still skipped); without it such a run stops
    everything, before any training, with one line naming what differs."""
    for spec in specs:  # fail on a bad name before spending any time
        check_arch(spec.arch)
    ds = discover(data, window, strict=strict)  # window: DICOM's default (--window)
    for w in ds.warnings + ds.problems:
        events.warn(w)
    prep = prepare(ds, split_seed, events.warn)  # the saved split, or made and saved now
    provenance = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": split_seed,
                  "data": str(data), "data_aliases": prep.aliases}
    rank0 = int(os.environ.get("RANK", "0")) == 0
    plan = []  # (spec, seed, out, to train, how a skipped one's settings differ, epochs a resumed run has saved)
    for spec in specs:  # every conflict with saved work is found before any time is spent training
        for seed in seeds:
            out = checkpoint_dir(checkpoints, spec, seed)
            if rank0 and out.is_dir():  # under torchrun, rank 0 alone touches the files
                with tidy_lock(out) as free:  # a best's card a stopped run left waiting; never a live run's
                    if free:
                        settle_card(out)
                adopt_fingerprint(out, prep.fingerprints, (CARD_NAME, STATE_NAME))
            if is_complete(out, cfg.epochs, prep.fingerprints):
                differs = finished_differences(out, cfg)
                if not (restart and differs):
                    plan.append((spec, seed, out, False, differs, 0))
                    continue
            resumed = resume_point(out, cfg, provenance, restart)
            plan.append((spec, seed, out, True, None, resumed["epoch"] if resumed else 0))
    train_arr = load_split(prep.samples(ds, "train"), cfg.img_size, strict, events.warn, "train", prep.split_file)
    val_arr = load_split(prep.samples(ds, "val"), cfg.img_size, strict, events.warn, "val", prep.split_file)
    present = sorted({int(k) for k in train_arr.labels})
    if len(present) < 2:  # a "classifier" of one class scores 1.00 and explains nothing (`data check`: not usable)
        held = f"images of {CLASS_NAMES[present[0]]} only" if present else "no readable images"
        raise TrainingError(f"--data: {data}: its training split holds {held}; a classifier needs two classes or more "
                            f"(`gradfaith-tui data check {data}` says what the folder holds)")
    provenance = {**provenance, "n_train": len(train_arr), "n_val": len(val_arr)}
    done = []
    for spec, seed, out, to_train, differs, resumed_after in plan:
        model_id = f"{spec.name}/seed{seed}"
        if not to_train:
            if rank0:
                with tidy_lock(out) as free:  # never another process's files while it writes there
                    if free:
                        tidy_finished(out)
            if differs:
                events.warn(f"{out}: already trained {differs}; kept as it is and skipped "
                            f"(--restart trains it again with these settings)")
            events.skip(model_id)
        else:
            with writer_lock(out, "train", enabled=rank0), \
                    batch_size_on_out_of_memory(cfg.batch_size, model_id, cfg.device, "epochs", TrainingError):
                # its bar once the folder is ours: a refused second train prints its one line and nothing before
                events.start(model_id, cfg.epochs, steps_per_epoch(len(train_arr), cfg.batch_size),
                             resumed_after)
                train(spec, seed, train_arr, val_arr, cfg, out, provenance,
                      on_batch=lambda e, b, n, loss, m=model_id: events.batch(m, e, b, n, loss),
                      on_epoch=lambda e, row, m=model_id: events.epoch(m, e, row), tuning=tuning, restart=restart)
        done.append(out)
    return done
