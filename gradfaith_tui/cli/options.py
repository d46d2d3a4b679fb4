"""Options shared across commands, with the same names and meaning everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gradfaith_tui.config import DEFAULT_CACHE, DEFAULT_CHECKPOINTS, DEFAULT_DATA
from gradfaith_tui.errors import CacheError, GradfaithError


def folder(value: Path, option: str, error: type[GradfaithError] = GradfaithError) -> Path:
    """A folder option whose path must not be a file: named in one line before any work starts (else found
    deep inside, as "Not a directory" or "File exists" naming a path below it)."""
    for above in (value, *value.parents):  # the nearest that exists: the folder, or where it would be made
        if above.exists():
            if above.is_dir():
                break
            if above == value:
                raise error(f"{option}: {value} is a file, not a folder")
            raise error(f"{option}: {value} cannot be a folder ({above} is a file)")
    return value


DataOpt = Annotated[Path, typer.Option("--data", help="Dataset folder: IQ-OTH/NCCD's class folders, other class folders, a CSV of paths and labels, or DICOM "
                                                      "(see data/README.md).")]
CheckpointsOpt = Annotated[Path, typer.Option("--checkpoints", help="Where trained models live: <name>/seed<k>/.",
                                              callback=lambda v: folder(v, "--checkpoints"))]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Audit cache folder (audit.sqlite + arrays).",
                                        callback=lambda v: folder(v, "--cache", CacheError))]
ModelsOpt = Annotated[Optional[str], typer.Option("--models", help="Comma-separated model names (timm names or demo names).")]
SeedsOpt = Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated training seeds, e.g. 0,1.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda or cuda:N.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable file instead of skipping it.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Use checkpoints trained on other data or another split "
                                                        "anyway (each named in a warning and kept on record for the "
                                                        "report).")]


def _window(value: str | None) -> tuple[float, float] | None:
    from gradfaith_tui.data.imageio import parse_window  # DataError names --window

    return parse_window(value) if value else None


# Parsed to (width, level) by its callback. It is part of the data's fingerprint (the slices differ), so
# train, evaluate, precompute and import must be given the same.
WindowOpt = Annotated[Optional[str], typer.Option("--window", callback=_window, help=(
    "DICOM window where a CSV 'window' column gives none: lung (default), mediastinal, or W,L; give train, "
    "evaluate, precompute and import the same, as the slices differ."))]

DEFAULTS = {"data": DEFAULT_DATA, "checkpoints": DEFAULT_CHECKPOINTS, "cache": DEFAULT_CACHE, "device": "cpu"}


def entries(value: str, option: str, what: str) -> list[str]:
    """A comma list's stripped entries; an empty one (`a,,b`, a trailing comma) is likely a name left out, so refused."""
    out = [v.strip() for v in value.split(",")]
    if out == [""]:
        raise GradfaithError(f"{option}: give at least one {what}")
    if "" in out:
        raise GradfaithError(f"{option}: '{value}' has an empty entry (give {what}s separated by single commas)")
    return out


def names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return list(dict.fromkeys(entries(value, "--models", "model name")))  # each once, in the order given


def seeds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    listed = entries(value, "--seeds", "seed")
    try:
        out = [int(v) for v in listed]
    except ValueError:
        raise GradfaithError(f"--seeds: expected comma-separated integers, got '{value}'") from None
    bad = [v for v in out if not 0 <= v < 2**32]  # NumPy's seeding takes no more
    if bad:
        raise GradfaithError(f"--seeds: {bad[0]} is out of range (0 to 4294967295)")
    return list(dict.fromkeys(out))  # each once: `0,0` must not train seed 0 twice


def check_device(device: str) -> str:
    """cpu, cuda or cuda:N (N a GPU this machine has); anything else is one line naming --device."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise GradfaithError(f"--device: '{device}' is not a torch device (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index is not None):
        raise GradfaithError(f"--device: '{device}' is not supported (use cpu, cuda or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GradfaithError(f"--device: '{device}' asked for, but no CUDA GPU is available here")
        n = torch.cuda.device_count()
        if dev.index is not None and not 0 <= dev.index < n:
            raise GradfaithError(f"--device: '{device}' asked for, but this machine has {n} CUDA GPU"
                                 f"{'s' if n != 1 else ''} (cuda:0{f' to cuda:{n - 1}' if n > 1 else ''})")
    return device
