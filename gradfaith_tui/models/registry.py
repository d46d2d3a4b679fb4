"""Finding trained checkpoints on disk: <root>/<name>/seed<k>/card.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradfaith_tui.data.dataset import Dataset
from gradfaith_tui.errors import CheckpointError
from gradfaith_tui.locks import holder, tidy_lock
from gradfaith_tui.models.card import (CARD_NAME, NEXT_CARD_NAME, WEIGHTS_NAME, adopt_fingerprint, other_data,
                                       read_card, settle_card, trained_on)


@dataclass(frozen=True)
class Checkpoint:
    directory: Path
    card: dict

    @property
    def model_id(self) -> str:
        return f"{self.card['name']}/seed{self.card['seed']}"


def find_checkpoints(root: Path, names: list[str] | None = None, seeds: list[int] | None = None) -> list[Checkpoint]:
    """Every <root>/<name>/seed<k>/card.json, filtered by names and seeds, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"--checkpoints: folder not found: {root}")
    for p in root.glob(f"*/seed*/{NEXT_CARD_NAME}"):  # a best's card a stopped run left waiting (never a live
        with tidy_lock(p.parent) as free:                 # run's: that one holds the folder's writer lock)
            if free:
                settle_card(p.parent)
    for d in sorted(p.parent for p in root.glob(f"*/seed*/{WEIGHTS_NAME}")):
        asked = (not names or d.parent.name in names) and (seeds is None or d.name in {f"seed{s}" for s in seeds})
        if asked and not (d / CARD_NAME).exists() and not (d / NEXT_CARD_NAME).exists():
            # skipping it would audit fewer models than trained, unsaid (a live run's first card is NEXT_CARD_NAME)
            raise CheckpointError(f"{d}: {WEIGHTS_NAME} without its {CARD_NAME}, so its model is unknown; restore "
                                  f"the card, or move the folder away (`gradfaith-tui import` registers weights "
                                  f"trained elsewhere)")
    found = [Checkpoint(p.parent, read_card(p.parent)) for p in sorted(root.glob(f"*/seed*/{CARD_NAME}"))]
    if names:
        known = {c.card["name"] for c in found}
        missing = [n for n in names if n not in known]
        if missing:
            raise CheckpointError(f"--models: no checkpoint for {', '.join(missing)} under {root} "
                                  f"(found: {', '.join(sorted(known)) or 'none'}); run `gradfaith-tui train`")
        order = {n: i for i, n in enumerate(names)}
        found = sorted((c for c in found if c.card["name"] in order), key=lambda c: (order[c.card["name"]], c.card["seed"]))
    if seeds is not None:
        have = sorted({c.card["seed"] for c in found})
        missing = [s for s in seeds if s not in have]
        if missing and have:  # as --models: a seed asked for and not there is said, not silently dropped
            raise CheckpointError(f"--seeds: no checkpoint trained with seed {', '.join(map(str, missing))} under {root} "
                                  f"(seeds found: {', '.join(map(str, have))}); train them or pick those")
        found = [c for c in found if c.card["seed"] in seeds]
    if not found:
        raise CheckpointError(f"--checkpoints: no trained models under {root}; run `gradfaith-tui train` first")
    return found


def unfinished(ckpts: list[Checkpoint]) -> list[str]:
    """A warning for each checkpoint whose training was stopped before its last epoch, or is still running (a
    train holds its folder's lock): its numbers are of an unfinished model (the saved epoch is the best so far)."""
    out = []
    for c in ckpts:
        if c.card.get("epochs", 0) <= c.card.get("epochs_done", 0):
            continue
        done = f"{c.card.get('epochs_done', 0)} of {c.card['epochs']} epochs"
        running = holder(c.directory)
        if running and running[1] == "train":
            out.append(f"{c.directory}: still training ({done} so far, pid {running[0]}); its results are those of "
                       f"the best epoch yet: rerun this command once that train has finished")
        else:
            out.append(f"{c.directory}: trained {done} (the run was stopped); its results are those of an unfinished "
                       f"model: rerun `gradfaith-tui train` with the same options to finish it")
    return out


def refuse_other_data(ckpts: list[Checkpoint], ds: Dataset, data: Path) -> None:
    """CheckpointError for the first checkpoint trained on other data than this dataset (data: this run's --data,
    named where it differs from the one trained with), saying what changed since the split was saved, where one
    was. Called before a split is made and saved for data these models never saw; --force skips it."""
    from gradfaith_tui.data.splitfile import changes_since_saved

    fingerprints = ds.fingerprints()
    for c in ckpts:
        if trained_on(c.card, fingerprints[1:]):
            adopt_fingerprint(c.directory, fingerprints)
        if not trained_on(c.card, fingerprints):
            since = changes_since_saved(ds, c.card.get("split_seed", 0), c.card.get("split_hash"))  # then the
            # folder-level hint is no help
            ids = [s.case_id for s in ds.samples]
            raise CheckpointError(f"{c.directory}: trained {other_data(c.card, fingerprints, None if since else data, ids)}"
                                  f"{since}; retrain, or pass --force")
