"""`gradfaith-tui train` and `gradfaith-tui evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gradfaith_tui.cli.data import MAX_SIZE
from gradfaith_tui.cli.options import (DEFAULTS, CacheOpt, CheckpointsOpt, DataOpt, DeviceOpt, ForceOpt, ModelsOpt,
                                       SeedsOpt, StrictOpt, WindowOpt, check_device, names, seeds)
from gradfaith_tui.errors import GradfaithError


def train(
    data: DataOpt = DEFAULTS["data"],
    checkpoints: CheckpointsOpt = DEFAULTS["checkpoints"],
    models: ModelsOpt = None,
    seeds_: SeedsOpt = None,
    device: DeviceOpt = DEFAULTS["device"],
    profile: Annotated[str, typer.Option(help="Defaults to start from: demo (small, CPU) or paper (224 px, 50 epochs).")] = "demo",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (overrides the profile).")] = None,
    img_size: Annotated[Optional[int], typer.Option(min=16, max=MAX_SIZE,
                                                    help="Input size in pixels (overrides the profile).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Batch size (overrides the profile).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate, > 0 (overrides the profile).")] = None,
    weighted_loss: Annotated[bool, typer.Option(help="Weight the loss by inverse class frequency.")] = False,
    pretrained_file: Annotated[Optional[Path], typer.Option(help="Local ImageNet weights for timm (never downloaded).")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the training forward (GPU runs).")] = False,
    cuda_graphs: Annotated[bool, typer.Option(help="On one GPU, replay each step's forward and backward from CUDA "
                                                   "graphs (--no-cuda-graphs: plain steps).")] = True,
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the train/val/test split.")] = 0,
    strict: StrictOpt = False,
    window: WindowOpt = None,
    restart: Annotated[bool, typer.Option("--restart", help="Train from scratch, discarding saved epochs: an unfinished "
                                          "run's, and a finished checkpoint's trained with other settings (without "
                                          "it, an unfinished run saved with other settings, or more --epochs than a "
                                          "finished one had, stops with what differs; a finished one is otherwise "
                                          "kept, with a warning naming what differs).")] = False,
) -> None:
    """Train models (resumable; finished checkpoints are skipped). Under torchrun: DistributedDataParallel."""
    from gradfaith_tui.cli.progress import bars, fit_events, main_rank
    from gradfaith_tui.config import profile as get_profile, spec_for
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import CudaTuning, TrainConfig

    if pretrained_file is not None:  # said before any bar, not inside training
        from gradfaith_tui.models.factory import pretrained_file_problem

        problem = pretrained_file_problem(pretrained_file)
        if problem:
            raise GradfaithError(problem)
    if lr is not None and not 0 < lr < float("inf"):  # 0 never moves; inf diverges on the first step
        raise GradfaithError(f"--lr: must be a positive, finite learning rate, got {lr}")
    prof = get_profile(profile, epochs=epochs, img_size=img_size, batch_size=batch_size, lr=lr)
    specs = [spec_for(n) for n in names(models)] if models is not None else list(prof.specs)  # "" is a mistake
    specs = list({s.name: s for s in specs}.values())  # a model named twice trains once (its spec is the same)
    archs = {s.describe(): s.name for s in specs}
    if pretrained_file is not None and len(archs) > 1:  # else found only once the first model has trained
        whose = "--models names" if models is not None else f"the {prof.name} profile trains"
        raise GradfaithError(f"--pretrained-file: one weights file fits one architecture, and {whose} {len(archs)} "
                             f"({', '.join(archs.values())}): train each with its own file, one --models at a time")
    cfg = TrainConfig(epochs=prof.epochs, batch_size=prof.batch_size, lr=prof.lr, img_size=prof.img_size,
                      weighted_loss=weighted_loss, device=check_device(device),
                      pretrained_file=str(pretrained_file) if pretrained_file else None, compile=compile_)
    with bars() as p:
        outs = fit_all(data, checkpoints, specs, seeds(seeds_) or list(prof.seeds), cfg, split_seed, strict, fit_events(p),
                       CudaTuning(graphs=cuda_graphs), restart, window)
    if main_rank():
        typer.echo(f"{len(outs)} checkpoints under {checkpoints}")


def evaluate(
    data: DataOpt = DEFAULTS["data"],
    checkpoints: CheckpointsOpt = DEFAULTS["checkpoints"],
    cache: CacheOpt = DEFAULTS["cache"],
    models: ModelsOpt = None,
    seeds_: SeedsOpt = None,
    device: DeviceOpt = DEFAULTS["device"],
    force: ForceOpt = False,
    strict: StrictOpt = False,
    window: WindowOpt = None,
) -> None:
    """Table I and confusion matrices on the test split; JSON and CSV written into the cache folder."""
    from gradfaith_tui.cli.progress import tables_console, warn
    from gradfaith_tui.models.evaluate_all import evaluate_all
    from gradfaith_tui.report.tables import confusion_rich, per_class_rich, table1_rich
    from gradfaith_tui.locks import writer_lock
    from gradfaith_tui.store.exports import (check_evaluation_data, evaluation_folder, store_evaluation,
                                             write_evaluation_files)

    folder = evaluation_folder(cache)  # a file in its place, or a folder that cannot be made or written: said at once
    if folder.is_dir():  # a run writing there now: said before any model runs, not after
        with writer_lock(folder, "precompute or evaluate"):
            pass

    today: list[str] = []

    def same_data(preps) -> None:  # an audit cache there must be of these data and splits, as precompute asks
        check_evaluation_data(folder, [(p.fingerprints, p.split_hash) for p in preps])
        today.extend(p.fingerprint for p in preps[:1])
    bodies = evaluate_all(data, checkpoints, names(models), seeds(seeds_), check_device(device), force, strict, warn,
                          before=same_data, window=window)
    con = tables_console()
    con.print(table1_rich(bodies))
    for model, body in bodies.items():
        con.print(per_class_rich(model, body))
        con.print(confusion_rich(model, body))
    with writer_lock(evaluation_folder(cache, make=True), "precompute or evaluate"):  # never beside a live one
        store_evaluation(folder, bodies, warn, today[0] if today else None)
        paths = write_evaluation_files(cache, bodies)
    con.print(f"written: {', '.join(str(p) for p in paths)}")


def import_model(
    weights: Annotated[Path, typer.Argument(help="Weights file: .safetensors, or a PyTorch state dict (read with weights_only=True).")],
    arch: Annotated[str, typer.Option(help="timm architecture the weights belong to, e.g. resnet50.")],
    name: Annotated[Optional[str], typer.Option(help="Name for --models (default: the architecture).")] = None,
    img_size: Annotated[int, typer.Option(min=16, max=MAX_SIZE, help="Input size the model was trained at.")] = 224,
    classes: Annotated[str, typer.Option(help="Class names in the order of the weights' output units.")] = "Normal,Benign,Malignant",
    data: DataOpt = DEFAULTS["data"],
    checkpoints: CheckpointsOpt = DEFAULTS["checkpoints"],
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1,
                                      help="Seed label for this instance (Consist compares seeds).")] = 0,
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the train/val/test split to evaluate on.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a checkpoint already saved under this --name and "
                                        "--seed (its files are deleted).")] = False,
    window: WindowOpt = None,
) -> None:
    """Register a model trained elsewhere: checks the weights fit, writes the same checkpoint card as `train`."""
    from gradfaith_tui.config import ModelSpec, family_of
    from gradfaith_tui.models.importer import import_model as run

    spec = ModelSpec(arch if name is None else name, arch, family_of(arch))
    listed = classes.split(",")
    if any(not c.strip() for c in listed):
        raise GradfaithError(f"--classes: '{classes}' has an empty entry (give the class names, comma-separated, in "
                             f"the order of the weights' output units)")
    out = run(weights, spec, img_size, [c.strip() for c in listed], data, checkpoints, seed, split_seed, force, window)
    typer.echo(f"imported {weights} as {spec.name}/seed{seed}: {out}")
