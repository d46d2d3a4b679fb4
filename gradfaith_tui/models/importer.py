"""Register a model trained elsewhere: a timm architecture plus a weights file, checked to fit,
written as the same checkpoint card our own training writes, so evaluate and precompute treat it alike."""

from __future__ import annotations

from pathlib import Path

import torch

from gradfaith_tui.config import CLASS_NAMES, ModelSpec
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.factory import (IMAGENET_MEAN, IMAGENET_STD, build, checkpoint_dir, describe_error, is_arch,
                                          load_weights, read_state, save_checkpoint, versions)

ALIASES = {"bengin": "Benign"}


def class_order(names: list[str]) -> list[int]:
    """For each class of the weights' head, its index in our Normal/Benign/Malignant order."""
    ours = [c.lower() for c in CLASS_NAMES]
    order = []
    for n in names:
        key = ALIASES.get(n.strip().lower(), n.strip()).lower()
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
    if name.startswith("."):
        raise GradfaithError(f"--name: '{name}' starts with '.' (hidden, or a path outside --checkpoints)")
    if name != name.strip() or not name.isprintable():
        raise GradfaithError(f"--name: {name!r} begins or ends with spaces, or holds control characters")


def _clear(out: Path) -> None:
    """--force: the old checkpoint's files go (weights, card, curves, resume state), so nothing stale stays."""
    for p in out.iterdir():
        if p.is_file() or p.is_symlink():
            p.unlink()


def import_model(weights: Path, spec: ModelSpec, img_size: int, classes: list[str], data: Path, checkpoints: Path,
                 seed: int = 0, split_seed: int = 0, force: bool = False) -> Path:
    """force: replace a checkpoint already at <checkpoints>/<name>/seed<seed>, else refused (nothing written)."""
    check_name(spec.name)
    if not is_arch(spec.arch):
        raise GradfaithError(f"--arch: unknown timm architecture '{spec.arch}' (try `timm.list_models()`)")
    if seed < 0:
        raise GradfaithError(f"--seed: {seed} is below 0")
    out = checkpoint_dir(checkpoints, spec, seed)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out}: a checkpoint is already there (--name {spec.name} --seed {seed}); pass --force "
                              f"to replace it (its files are deleted), or choose another --name or --seed")
    order = class_order(classes)
    model = build(spec, img_size)
    state = read_state(weights)
    head = model.net.get_classifier()
    head_name = next(name for name, m in model.net.named_modules() if m is head)
    head_keys = [k for k in (f"{head_name}.weight", f"{head_name}.bias") if k in state]
    if order != list(range(len(order))):  # reorder the head's rows into our class order
        inverse = [order.index(k) for k in range(len(order))]
        for k in head_keys:
            state[k] = state[k][inverse].clone()
    load_weights(model, weights, state)
    ds = discover(data)
    prep = prepare(ds, split_seed)
    card = {"name": spec.name, "arch": spec.arch, "family": spec.family, "kwargs": spec.kwargs, "describe": spec.describe(),
            "seed": seed, "img_size": img_size, "class_names": list(CLASS_NAMES), "input": "grey [0,1], repeated to RGB",
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "imported_from": str(weights), "source_classes": classes,
            "data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": split_seed,
            "data": str(data), "epochs": 0, "epochs_done": 0, "versions": versions()}
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, img_size, img_size))  # the input size must suit the architecture
    except Exception as exc:
        raise CheckpointError(f"--img-size {img_size}: {spec.arch} cannot take {img_size}x{img_size} input "
                              f"({describe_error(exc)})") from None
    if force and out.is_dir():  # only now that the new checkpoint is known good
        _clear(out)
    save_checkpoint(model, out, card)
    return out
