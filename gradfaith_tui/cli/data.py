"""`gradfaith-tui data ...`: synthesise phantoms and check a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.errors import GradfaithError

app = typer.Typer(help="Datasets: synthesise phantoms, check a folder.", no_args_is_help=True)


def _class_index(value: str) -> int:
    names = [c.lower() for c in CLASS_NAMES]
    if value.lower() not in names:
        raise GradfaithError(f"--shortcut: unknown class '{value}' (choose from {', '.join(CLASS_NAMES)})")
    return names.index(value.lower())


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the phantom dataset into.")],
    patients: Annotated[int, typer.Option(min=1, help="Number of patients.")] = 100,
    slices: Annotated[int, typer.Option(min=1, help="Adjacent slices per patient.")] = 10,
    size: Annotated[int, typer.Option(min=32, help="Slice size in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same data.")] = 0,
    balance: Annotated[str, typer.Option(help="Normal,Benign,Malignant patient shares.")] = "0.38,0.11,0.51",
    shortcut: Annotated[Optional[str], typer.Option(help="Plant a burned-in marker on this class's images.")] = None,
    shortcut_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of that class's images marked.")] = 0.5,
) -> None:
    """Write synthetic chest-CT phantoms (IQ-OTH/NCCD layout, masks/, manifest.csv)."""
    from gradfaith_tui.data.phantom import PhantomConfig, write_dataset

    try:
        shares = tuple(float(v) for v in balance.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise GradfaithError(f"--balance: expected three non-negative shares like 0.38,0.11,0.51, got '{balance}'")
    cfg = PhantomConfig(n_patients=patients, slices_per_patient=slices, size=size, balance=shares, seed=seed,
                        shortcut_class=_class_index(shortcut) if shortcut else None, shortcut_rate=shortcut_rate)
    n = write_dataset(cfg, out)
    typer.echo(f"wrote {n} slices of {patients} patients to {out}")


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Dataset folder to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    split_seed: Annotated[int, typer.Option(help="Seed of the train/val/test split.")] = 0,
) -> None:
    """Count classes and splits, find unreadable files; exit 0 when usable."""
    from gradfaith_tui.data.check import check_dataset

    report = check_dataset(data, split_seed)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_check(report)
    if not report["usable"]:
        raise typer.Exit(1)


def _print_check(r: dict) -> None:
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{r['root']}[/] · layout {r['layout']} · {r['n_images']} labelled images · fingerprint {r['fingerprint']}")
    t = Table("class", "train", "val", "test", "total", "with mask")
    for name in CLASS_NAMES:
        c = r["classes"][name]
        t.add_row(name, *(str(c[k]) for k in ("train", "val", "test", "total", "masks")))
    con.print(t)
    con.print("sizes: " + ", ".join(f"{k} x{v}" for k, v in r["sizes"].items()))
    con.print(f"patients: {r['patients'] if r['patients'] is not None else 'no patient ids (slice-level split)'}")
    for w in r["warnings"]:
        con.print(f"[yellow]warning:[/] {w}")
    for e in r["errors"]:
        con.print(f"[red]unreadable:[/] {e}")
    con.print("[green]usable[/]" if r["usable"] else "[red]not usable[/]")
