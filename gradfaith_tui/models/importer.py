"""Register a model trained elsewhere: a timm architecture plus a weights file, checked to fit,
written as the same checkpoint card our own training writes, so evaluate and precompute treat it alike."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from gradfaith_tui.config import CLASS_NAMES, ModelSpec
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.locks import LOCK_NAME, writer_lock
from gradfaith_tui.models.card import CARD_NAME, NEXT_CARD_NAME, WEIGHTS_NAME, read_card
from gradfaith_tui.models.epoch_saver import SLOTS, STATE_NAME, optim_name, weights_name
from gradfaith_tui.models.factory import (IMAGENET_MEAN, IMAGENET_STD, build, checkpoint_dir, describe_error, is_arch,
                                          load_weights, save_checkpoint, versions)
from gradfaith_tui.models.weights_file import read_state

ALIASES = {"bengin": "benign"}


def class_order(names: list[str]) -> list[int]:
    """For each class of the weights' head, its index in our Normal/Benign/Malignant order."""
    ours = [c.lower() for c in CLASS_NAMES]
    order = []
    for n in names:
        key = re.sub(r"\s+cases?$", "", n.strip().lower())  # IQ-OTH/NCCD's folders: "Bengin cases"
        key = ALIASES.get(key, key)
        if key not in ours:
            raise CheckpointError(f"--classes: unknown class '{n}' (the audit knows {', '.join(CLASS_NAMES)})")
        order.append(ours.index(key))
    if sorted(order) != list(range(len(CLASS_NAMES))):
        raise CheckpointError(f"--classes: give each of {', '.join(CLASS_NAMES)} exactly once, in the weights' order")
    return order


def check_name(name: str) -> None:
    """A --name that is one folder under --checkpoints and one entry of --models."""
    if not name.strip():
        raise GradfaithError("--name: give a name (it is the model's folder under --checkpoints and its --models entry)")
    bad = next((c for c in ("/", "\\", ",") if c in name), None)
    if bad:
        raise GradfaithError(f"--name: '{name}' holds '{bad}' (a name is one folder under --checkpoints and one "
                             f"entry of the comma-separated --models)")
    if name.startswith((".", "-")):
        raise GradfaithError(f"--name: '{name}' starts with '{name[0]}' (hidden, a path outside --checkpoints, or read "
                             f"as an option)")
    if name != name.strip() or not name.isprintable():
        raise GradfaithError(f"--name: {name!r} begins or ends with spaces, or holds control characters")


# What a checkpoint folder holds (ours or an import's); --force removes these and nothing a user put beside them.
CHECKPOINT_FILES = (CARD_NAME, NEXT_CARD_NAME, WEIGHTS_NAME, STATE_NAME, "history.csv",
                    *(f(slot) for f in (weights_name, optim_name) for slot in ("", *SLOTS)))


def _clear(out: Path) -> None:
    """--force: the old checkpoint's files go (weights, card, curves, resume state), so nothing stale stays."""
    for name in CHECKPOINT_FILES:
        (out / name).unlink(missing_ok=True)


def classifier_names(net: torch.nn.Module) -> list[str]:
    """Every classifier layer of the net: timm's pretrained_cfg names them all (a distilled or auxiliary head
    besides the main one), get_classifier() only the main one for some architectures."""
    modules = dict(net.named_modules())
    names = (getattr(net, "pretrained_cfg", None) or {}).get("classifier")
    found = [n for n in ([names] if isinstance(names, str) else list(names or [])) if n in modules]
    if not found:
        heads = net.get_classifier()
        heads = heads if isinstance(heads, tuple) else (heads,)
        found = [n for n, m in modules.items() if any(m is h for h in heads)]
    return found


def _reorder_heads(state: dict, net: torch.nn.Module, order: list[int]) -> None:
    """Each classifier's rows into our class order, where the file's head has one row a class (a head of
    another size is left for the fit check to name)."""
    if order == list(range(len(order))):
        return
    inverse = [order.index(k) for k in range(len(order))]
    own = net.state_dict()
    for name in classifier_names(net):
        for key in (f"{name}.weight", f"{name}.bias"):
            for k in [k for k in state if k == key or k.endswith(f".{key}")]:  # under a wrapper's prefix too
                if key in own and state[k].ndim and state[k].shape[0] == len(order) and own[key].shape[0] == len(order):
                    state[k] = state[k][inverse].clone()


def _same_model_as_other_seeds(out: Path, spec: ModelSpec, img_size: int) -> None:
    """Consist compares a name's seeds map by map: they must be one architecture at one input size."""
    for other in sorted(out.parent.glob("seed*")):
        if other == out or not (other / CARD_NAME).is_file():
            continue
        try:
            card = read_card(other)
        except GradfaithError:
            continue
        if (card.get("arch"), card.get("img_size")) != (spec.arch, img_size):
            raise CheckpointError(f"{other}: --name {spec.name} holds {card.get('arch')} at {card.get('img_size')} px; "
                                  f"its seeds must be one architecture at one size (Consist compares them): "
                                  f"choose another --name")


def import_model(weights: Path, spec: ModelSpec, img_size: int, classes: list[str], data: Path, checkpoints: Path,
                 seed: int = 0, split_seed: int = 0, force: bool = False,
                 window: tuple[float, float] | None = None) -> Path:
    """force: replace a checkpoint already at <checkpoints>/<name>/seed<seed>, else refused (nothing written);
    window: the DICOM window of the data it is registered for (--window)."""
    check_name(spec.name)
    if not is_arch(spec.arch):
        raise GradfaithError(f"--arch: unknown timm architecture '{spec.arch}' (try `timm.list_models()`)")
    if seed < 0:
        raise GradfaithError(f"--seed: {seed} is below 0")
    out = checkpoint_dir(checkpoints, spec, seed)
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not force:
        raise CheckpointError(f"{out}: a checkpoint is already there (--name {spec.name} --seed {seed}); pass --force "
                              f"to replace it (its files are deleted), or choose another --name or --seed")
    order = class_order(classes)
    _same_model_as_other_seeds(out, spec, img_size)
    try:
        model = build(spec, img_size)
    except GradfaithError:
        raise
    except Exception as exc:  # an input size the architecture cannot be built for, or cannot hold in memory
        raise CheckpointError(f"--img-size {img_size}: cannot build {spec.arch} for {img_size}x{img_size} input "
                              f"({describe_error(exc)})") from None
    state = read_state(weights)
    _reorder_heads(state, model.net, order)
    load_weights(model, weights, state)
    ds = discover(data, window)
    prep = prepare(ds, split_seed)
    card = {"name": spec.name, "arch": spec.arch, "family": spec.family, "kwargs": spec.kwargs, "describe": spec.describe(),
            "seed": seed, "img_size": img_size, "class_names": list(CLASS_NAMES), "input": "grey [0,1], repeated to RGB",
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "imported_from": str(Path(weights).resolve()), "source_classes": classes,
            "data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": split_seed,
            "data": str(data), "epochs": 0, "epochs_done": 0, "versions": versions()}
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, img_size, img_size))  # the input size must suit the architecture
    except Exception as exc:
        raise CheckpointError(f"--img-size {img_size}: {spec.arch} cannot take {img_size}x{img_size} input "
                              f"({describe_error(exc)})") from None
    with writer_lock(out, "import"):  # never under a train running there (its resume files would go)
        if force and out.is_dir():  # only now that the new checkpoint is known good
            _clear(out)
        save_checkpoint(model, out, card)
    return out
