"""Checkpoint cards (JSON beside the weights), readable without importing torch, and the atomic file writes
every checkpoint file goes through."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.errors import CheckpointError

CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"


def as_fingerprints(fingerprints: str | Sequence[str]) -> tuple[str, ...]:
    """Today's fingerprint of the data alone, or today's first and then what earlier versions called the same
    data (Dataset.fingerprints, Prepared.fingerprints): the one shape every check takes them in."""
    return (fingerprints,) if isinstance(fingerprints, str) else tuple(fingerprints)


def trained_on(card: dict, fingerprints: str | Sequence[str]) -> bool:
    """Was the card's model trained on these data: fingerprints is today's, or all a Prepared or Dataset knows
    (earlier versions gave data with CSV lesion boxes another)."""
    return card.get("data_fingerprint") in as_fingerprints(fingerprints)


def adopt_fingerprint(directory: Path, fingerprints: Sequence[str], files: Sequence[str] = (CARD_NAME,)) -> None:
    """A card (and, with files, a resume state) that matches these data only under the name an earlier version
    gave them (a CSV's lesion boxes were part of it) takes today's, so that moving a box later does not make
    its model "trained on other data". Only while no run writes in the folder; a folder this user cannot write
    keeps its files (they match while the boxes stay as they are)."""
    from gradfaith_tui.locks import tidy_lock

    fps = tuple(fingerprints)
    if len(fps) < 2:
        return
    with tidy_lock(Path(directory)) as free:
        for name in files if free else ():
            path = Path(directory) / name
            try:
                body = json.loads(path.read_text()) if path.is_file() else None
                if isinstance(body, dict) and body.get("data_fingerprint") in fps[1:]:
                    replace_atomically(path, lambda tmp: tmp.write_text(
                        json.dumps({**body, "data_fingerprint": fps[0]}, indent=2, sort_keys=True)))
            except (OSError, ValueError):  # unreadable or damaged: the commands that read it name it
                continue


def other_data(card: dict, fingerprint: str | Sequence[str], data: Path | str | None = None,
               case_ids: Sequence[str] = ()) -> str:
    """"on other data (...)" in words, naming the --data it was trained with where that differs from this run's.
    The same images passed one folder up or down count as other data (case ids are paths below --data), the
    likeliest mistake, so that is said where it looks like one: one folder holds the other, or every case id of
    this run's (case_ids) starts with the same folder, as when the folder above the dataset is passed."""
    now = as_fingerprints(fingerprint)[0]
    text = f"on other data (fingerprint {card.get('data_fingerprint')}, data now {now}"
    was = card.get("data")
    if was and data is not None and os.path.realpath(was) != os.path.realpath(str(data)):
        text += f"; it was trained with --data {was}, this run has --data {data}"
        then, here = Path(os.path.realpath(was)), Path(os.path.realpath(str(data)))
        parts = [Path(c).parts for c in case_ids]  # <folder>/<class folder>/<file> in every one: the folder above
        one_top = bool(parts) and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1
        if then in here.parents or here in then.parents or one_top:
            text += (": the same images passed at another folder level count as other data, as case ids are paths "
                     "below --data")
    return text + ")"


def provenance_gap(card: dict, fingerprints: str | Sequence[str], split_hash: str, split_seed: int | None = None) -> str | None:
    """What a checkpoint was trained on that is not these data and this split, in words: "on other data (...)" or
    "on another split of these data (...)" with both values; None where it matches (or its card predates split
    hashes). The class list needs no check: card_problem refuses any but CLASS_NAMES."""
    if not trained_on(card, fingerprints):
        return other_data(card, fingerprints)
    then = card.get("split_hash")
    if then in (None, split_hash):
        return None
    seed = card.get("split_seed", 0)
    how = (f"--split-seed {seed}, now {split_seed}" if split_seed not in (None, seed)
           else f"--split-seed {seed} both: was it re-split since?")
    return f"on another split of these data (split {then}, now {split_hash}; {how})"


def read_card(directory: Path) -> dict:
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: no checkpoint (missing {CARD_NAME}); run `gradfaith-tui train` first")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint card ({exc})") from None
    problem = card_problem(card)
    if problem:
        raise CheckpointError(f"{path}: not a checkpoint card: {problem}; retrain or re-import the model")
    return card


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def card_problem(card: object) -> str | None:
    """What makes a parsed card unusable, in words (None where it is fine): the fields loading, the registry
    and the audit read, with their types."""
    if not isinstance(card, dict):
        return f"expected a JSON object, found {type(card).__name__}"
    for key in ("name", "arch", "family", "weights_sha1"):
        if not isinstance(card.get(key), str) or not card[key].strip():
            return f'"{key}" must be a non-empty string' if key in card else f'"{key}" is missing'
    if not _is_int(card.get("seed")) or card["seed"] < 0:
        return '"seed" must be a whole number, 0 or more' if "seed" in card else '"seed" is missing'
    if not _is_int(card.get("img_size")) or card["img_size"] < 16:
        return '"img_size" must be a whole number of pixels, 16 or more' if "img_size" in card else '"img_size" is missing'
    names = card.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return '"class_names" must be a list of names' if "class_names" in card else '"class_names" is missing'
    if names != list(CLASS_NAMES):  # train and import both write the head in this order
        return f'"class_names" must be {", ".join(CLASS_NAMES)} (the order of the head\'s outputs), found {", ".join(names) or "none"}'
    if not isinstance(card.get("kwargs", {}), dict):
        return '"kwargs" must be an object of constructor arguments'
    for key in ("describe", "data_fingerprint", "split_hash"):
        if key in card and not isinstance(card[key], str):
            return f'"{key}" must be a string'
    for key in ("epochs", "epochs_done", "split_seed"):
        if key in card and not _is_int(card[key]):
            return f'"{key}" must be a whole number'
    return None


def weights_problem(path: Path) -> str | None:
    """Why a weights file is not whole ("missing", "damaged (...)"), or None: its safetensors header must cover
    the file exactly, which a copy cut short or an emptied file fails. Reads the header only, not the tensors."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        return "missing"
    try:
        with safe_open(str(path), "numpy"):
            return None
    except (SafetensorError, OSError) as exc:
        return f"damaged ({str(exc).removeprefix('Error while deserializing header: ')})"


def file_hash(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


EPOCHS_KEPT = "the finished epochs are kept: free some space and rerun to resume"


def replace_atomically(path: Path, write: Callable[[Path], object], kept: str = EPOCHS_KEPT) -> None:
    """write() fills a temporary file beside path, which a rename then puts in place: a crash at any moment
    leaves either the old file or the new one, never half of one. A full disk is an OSError naming path (not
    the temporary file, which is removed), saying what was kept."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover from a crash (os.link refuses an existing target)
    try:
        write(tmp)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a full disk: the partial file would only hold on to the space
        if _disk_full(exc):
            raise OSError(errno.ENOSPC, f"no space left on the device ({kept})", str(path)) from None
        raise
    tmp.replace(path)


def _disk_full(exc: BaseException) -> bool:
    """A full disk as torch.save (a zip writer's "unexpected pos"), safetensors, NumPy ("N requested and M
    written") or Python report it."""
    text = str(exc)
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in text \
        or "unexpected pos" in text or "file write failed" in text or ("requested and" in text and "written" in text)


def write_card_file(directory: Path, card: dict, name: str = CARD_NAME) -> None:
    replace_atomically(Path(directory) / name, lambda tmp: tmp.write_text(json.dumps(card, indent=2, sort_keys=True)))


# A new best's card waits here while the weights it names are put in place, then is renamed over the card:
# the card never names weights that are not on disk, whenever a run stops.
NEXT_CARD_NAME = CARD_NAME + ".next"


def settle_card(directory: Path) -> None:
    """Finish or drop a best's card that a stopped run left waiting: it becomes the card where the weights on
    disk are the ones it names (the run stopped after putting them in place), else it goes."""
    directory = Path(directory)
    waiting = directory / NEXT_CARD_NAME
    if not waiting.is_file():
        return
    try:
        named = json.loads(waiting.read_text()).get("weights_sha1")
        if named is not None and (directory / WEIGHTS_NAME).is_file() and file_hash(directory / WEIGHTS_NAME) == named:
            waiting.replace(directory / CARD_NAME)
        else:
            waiting.unlink()
    except (OSError, ValueError, AttributeError):  # a read-only folder, or half a file: the card as it is stands
        pass
