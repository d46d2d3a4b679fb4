"""Patient pseudonyms for DICOM slices: "dcm-" and 12 hex digits of HMAC-SHA256(key, PatientID).

The key is a random 32-byte secret made once per dataset, on the first DICOM slice with a PatientID, and
kept beside the data's saved splits: `<data>/splits/pseudonym.key` (the folder of a CSV given as --data),
or, where that folder is read-only, in the same per-dataset cache folder the split then goes to. Without
the key a pseudonym cannot be recomputed from a guessed ID, as an unkeyed hash of IDs like PAT001 can.
Keep the key private; deleting it changes every pseudonym (re-split with `data split --force`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gradfaith_tui.data.splitfile import fallback_dir_of
from gradfaith_tui.errors import DataError

KEY_NAME = "pseudonym.key"
KEY_BYTES = 32
PREFIX = "dcm-"


def key_places(root: Path) -> list[Path]:
    """Where a dataset's key may be, preferred first (the same folders as its saved splits)."""
    return [root / "splits" / KEY_NAME, fallback_dir_of(root) / KEY_NAME]


class Pseudonymizer:
    """One per discover(): reads the dataset's key, or makes it, on the first ID it is asked about."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: Path | None = None  # where a new key was written, when this call made one
        self._key: bytes | None = None

    def __call__(self, patient_id: str) -> str:
        digest = hmac.new(self.key(), patient_id.encode(), hashlib.sha256).hexdigest()
        return f"{PREFIX}{digest[:12]}"

    def key(self) -> bytes:
        if self._key is None:
            places = key_places(self.root)
            self._key = next((k for k in map(_read_key, places) if k is not None), None) or self._create(places)
        return self._key

    def _create(self, places: list[Path]) -> bytes:
        for i, target in enumerate(places):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                key = _write_new(target)
            except OSError as exc:
                if i == len(places) - 1:
                    raise DataError(f"{target}: cannot save the patient pseudonym key "
                                    f"({exc.strerror or exc})") from None
                continue
            self.created = target
            return key
        raise AssertionError("unreachable")


def _read_key(path: Path) -> bytes | None:
    """The key stored at path; None where there is none. A key that is there but unusable is an error:
    making a new one would silently change every patient's pseudonym."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise DataError(f"{path}: cannot read the patient pseudonym key ({why})") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise DataError(f"{path}: not a pseudonym key ({KEY_BYTES * 2} hex digits); restore it, or delete it and "
                        "re-split with `gradfaith-tui data split DATA --force` (the patient pseudonyms change)")
    return key


def _write_new(target: Path) -> bytes:
    """A new key written atomically with mode 0o600; where another process got there first, its key."""
    key = secrets.token_bytes(KEY_BYTES)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.hex() + "\n")
        try:
            os.link(tmp, target)  # atomic and never overwrites a key that appeared meanwhile
        except FileExistsError:
            existing = _read_key(target)
            if existing is None:
                raise
            return existing
        except OSError:  # a file system without hard links
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return key
