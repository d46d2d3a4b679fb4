"""`gradfaith-tui precompute`, `explore` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gradfaith_tui.cli.options import (DEFAULTS, CacheOpt, CheckpointsOpt, DataOpt, DeviceOpt, ForceOpt, ModelsOpt,
                                       SeedsOpt, StrictOpt, WindowOpt, check_device, folder, names,
                                       seeds)


def _tau(value: float) -> float:
    """Above 0: at 0 a flat map (all zero) would cover everything. Click's own range check refused nan as
    "should be less than or equal to 1"."""
    from gradfaith_tui.errors import GradfaithError

    if not 0 < value <= 1:  # false for nan
        raise GradfaithError(f"--tau: must be a number above 0 and at most 1 (a share of each map's peak), got {value}")
    return value


def precompute(
    data: DataOpt = DEFAULTS["data"],
    checkpoints: CheckpointsOpt = DEFAULTS["checkpoints"],
    cache: CacheOpt = DEFAULTS["cache"],
    models: ModelsOpt = None,
    seeds_: SeedsOpt = None,
    device: DeviceOpt = DEFAULTS["device"],
    method: Annotated[str, typer.Option(help="gradcam, gradcam++, hirescam, xgradcam, layercam, eigencam, scorecam (pytorch-grad-cam), or rollout / grad-rollout for ViTs.")] = "gradcam",
    engine: Annotated[str, typer.Option(help="fast: batched Grad-CAM with Faith fused, kept on the device; library: pytorch-grad-cam.")] = "fast",
    deep: Annotated[bool, typer.Option("--deep", help="Also deletion/insertion AUC (10 steps; 22 forwards per case).")] = False,
    sanity_cases: Annotated[int, typer.Option(min=0, help="Cases for the cascading randomisation check per model (0: skip).")] = 8,
    tau: Annotated[float, typer.Option(callback=_tau, help="Binarisation threshold for LocAcc, IoU, "
                                       "Consist: a share of each map's peak, above 0 and at most 1.")] = 0.5,
    baseline: Annotated[str, typer.Option(help="What replaces removed pixels in Faith and outside the lungs in the lungs-only check: black, mean or "
                                                "blur (deletion/insertion always use a blurred copy).")] = "black",
    target: Annotated[str, typer.Option(help="Class each map explains: pred (predicted) or true.")] = "pred",
    target_layer: Annotated[Optional[str], typer.Option(help="Dotted module path inside the timm net (default: per architecture).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Cases per CAM batch (default: 64 on CUDA, 32 elsewhere).")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the fast engine's trunk: about a minute per model, then faster (large sets).")] = False,
    force: ForceOpt = False,
    strict: StrictOpt = False,
    window: WindowOpt = None,
) -> None:
    """Heatmaps, predictions, every metric, suspects, Table I and sanity checks into the cache (only what is missing)."""
    from gradfaith_tui.cam.engine import ALL_METHODS, ENGINES
    from gradfaith_tui.cli.progress import bars, main_rank, precompute_progress, warn
    from gradfaith_tui.config import CamSettings
    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.metrics.faithfulness import BASELINES
    from gradfaith_tui.pipeline import precompute as run

    if method not in ALL_METHODS:
        raise GradfaithError(f"--method: unknown CAM method '{method}' (choose from {', '.join(ALL_METHODS)})")
    if engine not in ENGINES:
        raise GradfaithError(f"--engine: '{engine}' (choose from {', '.join(ENGINES)})")
    if baseline not in BASELINES:
        raise GradfaithError(f"--baseline: '{baseline}' (choose from {', '.join(BASELINES)})")
    device = check_device(device)
    if batch_size is None:  # a GPU's figures (README) were measured at 64; a CPU gains nothing from more
        batch_size = 64 if device.startswith("cuda") else 32
    cam = CamSettings(method=method, tau=tau, baseline=baseline, batch_size=batch_size, engine=engine,
                      deep_steps=10 if deep else 0, sanity_cases=sanity_cases, compile=compile_)
    with bars() as p:
        run(data, checkpoints, cache, names(models), seeds(seeds_), cam, target, target_layer, device,
            strict, force, warn=warn, progress=precompute_progress(p), window=window)
    if main_rank():
        typer.echo(f"cache ready: {cache}")


MethodShown = Annotated[Optional[str], typer.Option(
    "--method", help="Whose maps and metrics to show, where the cache holds several (default: gradcam where it has "
                     "it, else the method of its last precompute).")]


def explore(
    cache: CacheOpt = DEFAULTS["cache"],
    method: MethodShown = None,
    graphics: Annotated[str, typer.Option(help="Heatmap tiles: halfblock (any terminal), kitty or sixel (pixel "
                                               "resolution), auto (what the terminal supports, else halfblock).")] = "halfblock",
    export_dir: Annotated[Optional[Path], typer.Option(
        help="Where x writes flagged.csv and flagged.json (default: CACHE/exports; ./gradfaith-exports/<cache folder> "
             "where the cache's folder cannot be written).", callback=lambda v: v and folder(v, "--export-dir"))] = None,
    colormap: Annotated[Optional[str], typer.Option(help="Heatmap colours: jet, hot, viridis or grey, cycled with C "
                                                         "(default: jet; grey where NO_COLOR is set).")] = None,
) -> None:
    """Open the explorer on a cache (reads only the cache, and writes your flags and notes to it; never loads a model)."""
    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.tui.app import run_explorer
    from gradfaith_tui.tui.render import COLORMAPS
    from gradfaith_tui.tui.widgets.pixel_tiles import MODES

    if graphics not in MODES:
        raise GradfaithError(f"--graphics: '{graphics}' (choose from {', '.join(MODES)})")
    if colormap is not None and colormap not in COLORMAPS:
        raise GradfaithError(f"--colormap: '{colormap}' (choose from {', '.join(COLORMAPS)})")
    run_explorer(cache, graphics=graphics, method=method, export_dir=export_dir, colormap=colormap)


def report(
    cache: CacheOpt = DEFAULTS["cache"],
    out: Annotated[Path, typer.Option(help="Folder for the report files.",
                                      callback=lambda v: folder(v, "--out"))] = Path("reports/latest"),
    format_: Annotated[str, typer.Option("--format", help="md, html or all (Markdown with PNG figures, one self-contained HTML file).")] = "all",
    terminal: Annotated[bool, typer.Option("--terminal", help="Also print the main tables here.")] = False,
    method: MethodShown = None,
) -> None:
    """Write the audit report: the paper's Table I and Figs. 1-4 from this cache, faithfulness with CIs, flags, provenance."""
    from gradfaith_tui.errors import GradfaithError
    from gradfaith_tui.report.write import FORMATS, write_report
    from gradfaith_tui.store.reader import CacheReader

    if format_ not in FORMATS:
        raise GradfaithError(f"--format: '{format_}' (choose from {', '.join(FORMATS)})")
    reader = CacheReader(cache, method)
    built, paths = write_report(reader, out, format_)
    if terminal:
        from gradfaith_tui.cli.progress import tables_console
        from gradfaith_tui.report.terminal import print_report

        print_report(built, tables_console())
    for path in paths:
        if path.suffix in (".md", ".html"):
            typer.echo(f"report written: {path}")


def print_summary(reader) -> None:
    from gradfaith_tui.cli.progress import tables_console
    from gradfaith_tui.report.tables import summary_rich, table1_rich

    con = tables_console()
    con.print(table1_rich(reader.evaluation()))
    con.print(summary_rich(reader.summary()))
