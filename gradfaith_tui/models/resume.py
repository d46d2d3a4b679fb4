"""What a checkpoint folder already holds, and whether a training run may go on from it: a finished run to
skip, saved epochs to resume, or saved work that differs and stops the run with one line naming how."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from gradfaith_tui.errors import CheckpointError, TrainingError
from gradfaith_tui.models.card import CARD_NAME, WEIGHTS_NAME, other_data, read_card, trained_on, weights_problem
from gradfaith_tui.models.epoch_saver import SLOTS, STATE_NAME, optim_name, read_resume_state, weights_name

if TYPE_CHECKING:
    from gradfaith_tui.models.train import TrainConfig


def is_complete(directory: Path, epochs: int, fingerprint: str | Sequence[str]) -> bool:
    """A finished run (all the epochs its schedule spanned) of at least `epochs` epochs on this data."""
    try:
        card = read_card(directory)
    except CheckpointError:  # missing or unreadable card: not trained yet
        return False
    done = card.get("epochs_done", 0)
    try:
        state = read_resume_state(directory)
    except TrainingError:  # damaged: not complete; training it says what is wrong
        return False
    if state is not None and state.get("epoch", 0) < done:  # stopped while saving its last epoch: the card was
        return False                                          # written, the state (the commit) not; resume it
    return (done >= epochs and done >= card.get("epochs", 0) and trained_on(card, fingerprint)
            and weights_problem(directory / WEIGHTS_NAME) is None)  # a card over lost weights: not a model


def tidy_finished(out: Path) -> None:
    """What a finished run stopped while removing, or a killed write left: resume files, temporary files."""
    drop_resume_files(out)
    for p in out.glob(".tmp*"):  # safetensors' own temporary files
        p.unlink(missing_ok=True)
    for p in out.glob("*.tmp"):  # ours (models/card.py)
        p.unlink(missing_ok=True)


# The settings that define a training run, with the options that set them. Not the device, nor --compile:
# they change where and how fast the steps run, not what they compute.
TRAINING_OPTIONS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "img_size": "--img-size",
                    "weighted_loss": "--weighted-loss", "pretrained_file": "--pretrained-file"}
EXTEND_NOTE = ("the one-cycle learning-rate schedule spans every epoch of a run, so the finished epochs belong "
               "to a run of their own length and cannot be extended or cut short")


def _setting(option: str, value, bare: bool = False) -> str:
    if isinstance(value, bool):
        return option if value else f"--no-{option[2:]}"
    if value is None:
        return "none" if bare else f"no {option}"
    return str(value) if bare else f"{option} {value}"


def setting_differences(saved: dict, cfg: TrainConfig, why: bool = True) -> str | None:
    """How the saved training settings (a TrainConfig as a dict) differ from cfg's, as "with --img-size 64,
    now 32"; None where they agree. Settings the saved dict lacks (older versions) take their defaults. why: say
    why another --epochs cannot resume."""
    from dataclasses import MISSING, fields

    now = asdict(cfg)
    defaults = {f.name: f.default for f in fields(type(cfg)) if f.default is not MISSING}
    diffs = [(opt, saved.get(key, defaults.get(key, now[key])), now[key]) for key, opt in TRAINING_OPTIONS.items()]
    diffs = [(opt, old, new) for opt, old, new in diffs if old != new]
    if not diffs:
        return None
    olds = " and ".join(_setting(opt, old) for opt, old, _ in diffs)
    news = " and ".join(_setting(opt, new, bare=True) for opt, _, new in diffs)
    note = f" ({EXTEND_NOTE})" if why and any(opt == "--epochs" for opt, _, _ in diffs) else ""
    return f"with {olds}, now {news}{note}"


def _fingerprints(provenance: dict) -> tuple[str, ...]:
    """Today's fingerprint of the data and what earlier versions called them (Prepared.fingerprints)."""
    return (provenance["data_fingerprint"], *provenance.get("data_aliases", ()))


def _resume_conflict(state: dict, cfg: TrainConfig, provenance: dict) -> str | None:
    """What makes the saved epochs another run than the one asked for, in words; None where they resume it."""
    parts = []
    if not trained_on(state, _fingerprints(provenance)):
        parts.append(other_data(state, provenance["data_fingerprint"], provenance.get("data")))
    elif state.get("split_hash") not in (None, provenance.get("split_hash")):
        old, new = state.get("split_seed"), provenance.get("split_seed")
        parts.append(f"on another split of the data (--split-seed {old}, now {new})" if old != new else
                     f"on another split of the data (split {state['split_hash']}, now {provenance.get('split_hash')}; "
                     f"was it re-split?)")
    settings = setting_differences(state.get("config") or {}, cfg)
    if settings:
        parts.append(settings)
    return " and ".join(parts) or None


def resume_point(out: Path, cfg: TrainConfig, provenance: dict, restart: bool = False) -> dict | None:
    """The saved state a run resumes from, or None where it starts from scratch.

    Saved work is never dropped silently: finished epochs of a run with other settings or data, a finished
    checkpoint the asked-for --epochs would extend, or an imported model stop here with one line naming what
    differs, unless restart says to train from scratch.
    """
    state = None if restart else read_resume_state(out)  # --restart: not even read (it may be damaged)
    if state is not None:
        conflict = _resume_conflict(state, cfg, provenance)
        if conflict:
            raise TrainingError(f"{out}: finished epochs were trained {conflict}; rerun with the same settings to "
                                f"resume, or pass --restart to train from scratch (the finished epochs are discarded)")
        return state
    if restart:
        return None
    try:
        card = read_card(out)
    except CheckpointError as exc:
        if not any((out / name).exists() for name in (CARD_NAME, WEIGHTS_NAME)):
            return None  # nothing trained there yet
        # weights whose card is damaged or gone are still someone's model: never trained over unasked
        why = f"{WEIGHTS_NAME} without its {CARD_NAME}" if not (out / CARD_NAME).exists() else f"a card that cannot be read ({exc})"
        raise TrainingError(f"{out}: holds a model with {why}; restore the card, or pass --restart to train over it "
                            "(its weights are discarded), or move it away") from None
    if card.get("imported_from"):
        raise TrainingError(f"{out}: holds a model imported from {card['imported_from']}; pass --restart to train "
                            f"over it (the imported weights are discarded), or import it under another --name")
    done = card.get("epochs_done", 0)
    if done and not trained_on(card, _fingerprints(provenance)):
        raise TrainingError(f"{out}: holds a model trained {other_data(card, provenance['data_fingerprint'], provenance.get('data'))}; "
                            f"pass --restart to train it anew on this data (the trained checkpoint is replaced), or use "
                            f"another --checkpoints folder")
    if done and done < card.get("epochs", 0) and not (out / STATE_NAME).exists():
        # an unfinished run whose resume state is gone: its finished epochs cannot go on, nor go unasked
        raise TrainingError(f"{out / STATE_NAME}: missing, so the run stopped after {done} of {card['epochs']} epochs "
                            f"cannot be resumed; restore it, or pass --restart to train from scratch (the finished "
                            f"epochs and their best checkpoint are discarded)")
    if done and done >= card.get("epochs", 0):
        problem = weights_problem(out / WEIGHTS_NAME)
        if problem:  # a finished card over weights that are gone or cut short is not a trained model
            raise TrainingError(f"{out / WEIGHTS_NAME}: {problem}, though {CARD_NAME} says trained for {done} epochs; "
                                f"restore it, or pass --restart to train it again")
    if (done and done >= card.get("epochs", 0) and trained_on(card, _fingerprints(provenance))
            and cfg.epochs > done):
        raise TrainingError(f"{out}: already trained with --epochs {done}, now {cfg.epochs}; a finished run cannot "
                            f"be extended (its one-cycle learning-rate schedule spans its {done} epochs); pass "
                            f"--epochs {done} to keep it, or --restart to train from scratch (the trained "
                            f"checkpoint is replaced)")
    return None


def finished_differences(directory: Path, cfg: TrainConfig) -> str | None:
    """How a finished checkpoint's training settings differ from cfg's (see setting_differences)."""
    try:
        saved = read_card(directory).get("train_config")
    except CheckpointError:
        return None
    return setting_differences(saved, cfg, why=False) if isinstance(saved, dict) else None


def drop_resume_files(out: Path) -> None:
    """A finished run needs no resume point (other settings start over): free the 1-3 GB a paper model's take."""
    for slot in (*SLOTS, ""):
        (out / weights_name(slot)).unlink(missing_ok=True)
        (out / optim_name(slot)).unlink(missing_ok=True)
