"""Checkpoint cards (JSON beside the weights), readable without importing torch, and the atomic file writes
every checkpoint file goes through."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from gradfaith_tui.errors import CheckpointError

CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"


def read_card(directory: Path) -> dict:
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: no checkpoint (missing {CARD_NAME}); run `gradfaith-tui train` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint card ({exc})") from None


def file_hash(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """write() fills a temporary file beside path, which a rename then puts in place: a crash at any moment
    leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover from a crash (os.link refuses an existing target)
    write(tmp)
    tmp.replace(path)


def write_card_file(directory: Path, card: dict) -> None:
    replace_atomically(Path(directory) / CARD_NAME, lambda tmp: tmp.write_text(json.dumps(card, indent=2, sort_keys=True)))
