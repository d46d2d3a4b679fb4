"""Checkpoint cards (JSON beside the weights), readable without importing torch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
