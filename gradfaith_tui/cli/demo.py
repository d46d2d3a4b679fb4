"""`gradfaith-tui demo`: phantoms -> demo models -> cache -> explorer, each step skipped when already done."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from gradfaith_tui.cli.data import MAX_PATIENTS, MAX_SIZE
from gradfaith_tui.cli.options import DEFAULTS, CacheOpt, CheckpointsOpt, DataOpt, DeviceOpt, check_device, folder
from gradfaith_tui.errors import DataError

# Balanced classes and a planted shortcut (a burned-in marker on half the Malignant slices),
# so the demo audit has something real to find.
DEMO_PHANTOMS = dict(n_patients=80, slices_per_patient=4, size=128, balance=(0.34, 0.33, 0.33), seed=0,
                     shortcut_class=2, shortcut_rate=0.5)


def demo(
    data: DataOpt = DEFAULTS["data"],
    checkpoints: CheckpointsOpt = DEFAULTS["checkpoints"],
    cache: CacheOpt = DEFAULTS["cache"],
    device: DeviceOpt = DEFAULTS["device"],
    summary: Annotated[bool, typer.Option("--summary", help="Print the summary instead of opening the explorer.")] = False,
    patients: Annotated[int, typer.Option(min=10, max=MAX_PATIENTS, help="Phantom patients to generate (4 slices "
                                          "each; 10 or more, so that every split gets each class).")] = DEMO_PHANTOMS["n_patients"],
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (default: the demo profile's).")] = None,
    img_size: Annotated[Optional[int], typer.Option(min=16, max=MAX_SIZE, help="Input size (default: the demo profile's).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Retrain demo models saved with other --epochs or "
                                          "--img-size from scratch (without it, they are kept with a warning, or the "
                                          "demo stops where more epochs are asked).")] = False,
) -> None:
    """Build the demo end to end and open the explorer (a summary instead when stdin or stdout is not a terminal)."""
    from gradfaith_tui.cli.progress import console
    from gradfaith_tui.config import PROFILES
    from gradfaith_tui.freshness import cache_is_current
    from gradfaith_tui.store.exports import evaluation_folder

    t0 = time.perf_counter()
    check_device(device)  # every option checked before anything is written
    evaluation_folder(cache)  # a file, or a folder this user cannot make or write: else found after the training
    _phantoms(data, patients)
    prof = PROFILES["demo"]
    names = [s.name for s in prof.specs]
    if cache_is_current(data, checkpoints, cache, names, list(prof.seeds), epochs or prof.epochs,
                        img_size=img_size or prof.img_size):
        console.print(f"cache: {cache} is current, reusing it")
    else:
        _build(data, checkpoints, cache, ",".join(names), ",".join(map(str, prof.seeds)), device, epochs, img_size,
               restart)
    console.print(f"demo ready in {time.perf_counter() - t0:.1f} s")
    if summary or not (sys.stdin.isatty() and sys.stdout.isatty()):  # no terminal to run the explorer in
        from gradfaith_tui.cli.audit import print_summary
        from gradfaith_tui.store.reader import CacheReader

        print_summary(CacheReader(cache))
        typer.echo(f"cache: {cache}  (open it with: gradfaith-tui explore --cache {cache})")
        return
    from gradfaith_tui.tui.app import run_explorer

    run_explorer(cache)


def _phantoms(data: Path, patients: int) -> None:
    """Write the demo phantoms into a new or empty --data, reuse phantoms made here; never touch other data."""
    from gradfaith_tui.cli.progress import console
    from gradfaith_tui.data.phantom import PhantomConfig, folder_state, phantom_config, write_dataset

    folder(data, "--data", DataError)  # a file there: said as such, not as "other data"
    state = folder_state(data)
    if state == "other":
        raise DataError(f"--data: demo builds phantoms, and {data} holds other data; pass an empty folder, "
                        "or use train/precompute on it")
    if state == "phantoms":
        made = phantom_config(data)
        other = made is not None and made.get("n_patients") != patients
        console.print(f"phantoms: reusing {data}" + (f" ({made['n_patients']} patients; --patients applies to new "
                                                      "phantoms only)" if other else ""), soft_wrap=True)
        return
    n = write_dataset(PhantomConfig(**{**DEMO_PHANTOMS, "n_patients": patients}), data)
    console.print(f"phantoms: {n} slices written to {data}")


def _build(data, checkpoints, cache, names: str, seeds: str, device: str, epochs, img_size, restart: bool) -> None:
    from gradfaith_tui.cli.audit import precompute
    from gradfaith_tui.cli.models import train

    train(data=data, checkpoints=checkpoints, models=names, seeds_=seeds, device=device, profile="demo",
          epochs=epochs, img_size=img_size, batch_size=None, lr=None, weighted_loss=False, pretrained_file=None,
          compile_=False, split_seed=0, strict=False, restart=restart)
    precompute(data=data, checkpoints=checkpoints, cache=cache, models=names, seeds_=seeds, device=device,
               method="gradcam", engine="fast", deep=False, sanity_cases=8, tau=0.5, baseline="black", target="pred",
               target_layer=None, batch_size=32,
               force=False, strict=False)
