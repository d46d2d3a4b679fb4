"""Evaluate every checkpoint on the test split of the data it was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import Prepared, load_split, prepare
from gradfaith_tui.errors import CheckpointError
from gradfaith_tui.models.card import other_data, provenance_gap, trained_on
from gradfaith_tui.models.evaluate import evaluate
from gradfaith_tui.models.factory import load_checkpoint
from gradfaith_tui.models.precision import to_device
from gradfaith_tui.models.registry import find_checkpoints, refuse_other_data, unfinished


def evaluate_all(data: Path, checkpoints: Path, names: list[str] | None, seeds: list[int] | None, device: str = "cpu",
                 force: bool = False, strict: bool = False, warn: Callable[[str], None] = print,
                 before: Callable[[list[Prepared]], None] = lambda preps: None,
                 window: tuple[float, float] | None = None) -> dict[str, dict]:
    """before: given every split the models were trained on, ahead of the first model run (the CLI refuses
    there a --cache built from other data)."""
    ds = discover(data, window, strict=strict)
    for w in ds.problems:
        warn(w)
    ckpts = find_checkpoints(checkpoints, names, seeds)
    for w in unfinished(ckpts):
        warn(w)
    if not force:
        refuse_other_data(ckpts, ds, data)
    preps = {k: prepare(ds, k, warn) for k in sorted({c.card.get("split_seed", 0) for c in ckpts})}
    for c in ckpts if not force else ():  # another split of these data: its test cases may be training cases
        prep = preps[c.card.get("split_seed", 0)]
        gap = provenance_gap(c.card, prep.fingerprints, prep.split_hash)
        if gap:
            raise CheckpointError(f"{c.directory}: trained {gap}; retrain, or pass --force")
    before(list(preps.values()))
    bodies, arrays = {}, {}
    for c in ckpts:
        split_seed = c.card.get("split_seed", 0)
        prep = preps[split_seed]
        model, card = load_checkpoint(c.directory, prep.fingerprints, force)
        key = (split_seed, card["img_size"])
        if key not in arrays:
            arrays[key] = load_split(sorted(prep.samples(ds, "test"), key=lambda s: s.case_id), card["img_size"], strict, warn,
                                     "test", prep.split_file)
        arr = arrays[key]
        _, body = evaluate(to_device(model, device), arr.images, arr.labels, card["img_size"], device)
        if not trained_on(card, prep.fingerprints):  # only with --force: say it, and keep it with the numbers
            ids = [s.case_id for s in ds.samples]
            warn(f"{c.model_id}: trained {other_data(card, prep.fingerprint, data, ids)}; evaluated anyway, as --force asks")
            body["trained_on_other_data"] = card.get("data_fingerprint")
        elif gap := provenance_gap(card, prep.fingerprints, prep.split_hash):
            warn(f"{c.model_id}: trained {gap}; evaluated anyway, as --force asks: its test metrics may include "
                 f"training cases")
            body["trained_on_other_split"] = card.get("split_hash")
        # Which weights at which size: an audit cache takes these numbers only for the checkpoint it holds.
        body["weights_sha1"], body["img_size"] = card.get("weights_sha1"), card["img_size"]
        bodies[c.model_id] = body
    return bodies
