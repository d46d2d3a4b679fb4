"""`gradfaith-tui data ...`: synthesise phantoms and check a dataset."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from gradfaith_tui.cli.options import WindowOpt, folder
from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.errors import DataError, GradfaithError

app = typer.Typer(help="Datasets: synthesise phantoms, check a folder, save its split.", no_args_is_help=True)


def _class_index(value: str) -> int:
    names = [c.lower() for c in CLASS_NAMES]
    if value.lower() not in names:
        raise GradfaithError(f"--shortcut: unknown class '{value}' (choose from {', '.join(CLASS_NAMES)})")
    return names.index(value.lower())


# Upper bounds keep a typo from filling the disk or memory (and from an overflow deep in NumPy).
MAX_PATIENTS, MAX_SLICES, MAX_SIZE = 100_000, 1_000, 4096


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write the phantom dataset into.",
                                        callback=lambda v: folder(v, "OUT"))],
    patients: Annotated[int, typer.Option(min=1, max=MAX_PATIENTS, help="Number of patients.")] = 100,
    slices: Annotated[int, typer.Option(min=1, max=MAX_SLICES, help="Adjacent slices per patient.")] = 10,
    size: Annotated[int, typer.Option(min=32, max=MAX_SIZE, help="Slice size in pixels.")] = 256,
    seed: Annotated[int, typer.Option(min=0, help="Random seed; the same seed writes the same data.")] = 0,
    balance: Annotated[str, typer.Option(help="Normal,Benign,Malignant patient shares.")] = "0.38,0.11,0.51",
    shortcut: Annotated[Optional[str], typer.Option(help="Plant a burned-in marker on this class's images.")] = None,
    shortcut_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of that class's images marked.")] = 0.5,
    force: Annotated[bool, typer.Option("--force", help="Replace the phantoms this tool wrote to OUT before "
                                                        "(never other data).")] = False,
) -> None:
    """Write synthetic chest-CT phantoms (IQ-OTH/NCCD layout, masks/, manifest.csv) into a new folder."""
    from gradfaith_tui.data.phantom import PhantomConfig, write_dataset

    try:
        shares = tuple(float(v) for v in balance.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or not all(math.isfinite(v) and v >= 0 for v in shares) or sum(shares) <= 0:
        raise GradfaithError(f"--balance: expected three non-negative shares like 0.38,0.11,0.51, got '{balance}'")
    cfg = PhantomConfig(n_patients=patients, slices_per_patient=slices, size=size, balance=shares, seed=seed,
                        shortcut_class=_class_index(shortcut) if shortcut else None, shortcut_rate=shortcut_rate)
    try:
        n = write_dataset(cfg, out, replace=force)
    except MemoryError:  # write_dataset has taken its partial folder away
        raise GradfaithError(f"--size {size}: out of memory writing {out}; try a smaller --size") from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise GradfaithError(f"{out}: no space left on the device (nothing was kept: free some space, or pass a "
                             "smaller --patients or --size)") from None
    typer.echo(f"wrote {n} slices of {patients} patients to {out}")


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Dataset folder (or CSV manifest) to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the train/val/test split.")] = 0,
    window: WindowOpt = None,
) -> None:
    """Count classes and splits, sizes, unreadable files, duplicates, masks; exit 0 when usable (even with warnings)."""
    from gradfaith_tui.data.check import check_dataset

    _exists(data)
    report = check_dataset(data, split_seed, window)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_check(report)
    if not report["usable"]:
        raise typer.Exit(1)


def _exists(data: Path) -> None:
    """DATA is an argument of these commands, not --data: the message names it so."""
    if data.exists() and not data.is_dir() and data.suffix.lower() != ".csv":
        raise DataError(f"DATA: {data} is a file, not a data folder or a CSV manifest (.csv)")
    if not data.is_dir() and not (data.is_file() and data.suffix.lower() == ".csv"):
        raise DataError(f"DATA: folder (or CSV manifest) not found: {data}")


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="Dataset folder (or CSV manifest).")],
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the train/val/test split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Re-split even if a saved split exists (retrain after).")] = False,
) -> None:
    """Save the stratified 60/20/20 split next to the data (train, evaluate and precompute reuse it)."""
    from gradfaith_tui.data.dataset import discover
    from gradfaith_tui.data.prepared import prepare
    from gradfaith_tui.data.splitfile import find_saved

    _exists(data)
    ds = discover(data)
    existed = find_saved(ds, split_seed) is not None and not force
    prep = prepare(ds, split_seed, warn=lambda m: typer.echo(f"warning: {m}", err=True), force=force)
    counts = {sp: sum(v == sp for v in prep.assignment.values()) for sp in ("train", "val", "test")}
    verb = "kept (matches the data)" if existed else "saved"
    typer.echo(f"split seed {split_seed} {verb}: {prep.split_file} "
               f"(train {counts['train']}, val {counts['val']}, test {counts['test']}; hash {prep.split_hash})")


def _bar(n: int, most: int, width: int = 30) -> str:
    return "#" * max(1, round(n / most * width)) if most else ""


def _print_check(r: dict) -> None:
    from rich.markup import escape

    from gradfaith_tui.report.fit import NumbersTable

    con = Console(soft_wrap=True)  # long file names stay on one line for grep
    con.print(f"[bold]{escape(r['root'])}[/] · layout {r['layout']} · {r['n_images']} labelled images "
              f"({r['n_readable']} readable) · fingerprint {r['fingerprint']}")
    t = NumbersTable("class")
    for h in ("train", "val", "test", "total", "with mask"):
        t.add_column(h, justify="right")
    for name in CLASS_NAMES:
        c = r["classes"][name]
        t.add_row(name, *(str(c[k]) for k in ("train", "val", "test", "total", "masks")))
    con.print(t)
    con.print(f"split: seed {r['split']['seed']}, {escape(r['split']['note'])}")
    con.print("sizes (width x height):")
    most = max(r["sizes"].values(), default=0)
    for k, v in r["sizes"].items():
        con.print(f"  {k:>10} {v:>6} {_bar(v, most)}")
    if len(r["sizes"]) > 1:
        common = next(iter(r["sizes"]))
        con.print(f"  other than {common}: " + ", ".join(f"{k} {v:.0%}" for k, v in r["uncommon_size_share"].items()))
    con.print(f"patients: {r['patients'] if r['patients'] is not None else 'no patient ids (slice-level split)'}")
    m = r["masks"]
    con.print(f"masks: {m['with_mask']} images ({m['abnormal']} Benign/Malignant); LocAcc is absent, not zero, elsewhere")
    if r["shortcut"] is not None:
        con.print("planted shortcut (marker burned in): " + ", ".join(f"{k} {v}" for k, v in r["shortcut"].items()))
    if r["dicom"]["files"]:
        w, lv = r["dicom"]["default_window"]
        con.print(f"DICOM: {r['dicom']['files']} files, default window W{w:g}/L{lv:g} (a CSV 'window' column overrides)")
    d = r["duplicates"]
    con.print(f"duplicates: {d['exact_groups']} groups of identical files ({d['exact_across_splits']} across splits, "
              f"{d['exact_label_conflicts']} with different labels), "
              f"{d['near_pairs_across_splits']} near-duplicate pairs across splits")
    for g in d["exact"][:10]:
        con.print("  identical: " + escape(" = ".join(g)))
    for a, b, dist in d["near"][:10]:
        con.print(f"  near ({dist} bits): {escape(a)} ~ {escape(b)}")
    if d["near_pairs_across_splits"] > 10:
        con.print(f"  ... {d['near_pairs_across_splits'] - 10} more near pairs (--json lists {len(d['near'])})")
    for w in r["warnings"]:
        con.print(f"[yellow]warning:[/] {escape(w)}")
    for e in r["errors"]:
        con.print(f"[red]error:[/] {escape(e)}")
    but = r.get("usable_but") or []
    con.print(f"[yellow]usable {escape('; '.join(but))}[/]" if but
              else "[green]usable[/]" if r["usable"] else "[red]not usable[/]")
