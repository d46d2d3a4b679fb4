"""timm models by name, wrapped to take grey [0, 1] slices; checkpoints as safetensors plus a JSON card."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from gradfaith_tui.config import CLASS_NAMES, ModelSpec, family_of
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.card import (CARD_NAME, WEIGHTS_NAME, file_hash, other_data, read_card, replace_atomically,
                                       trained_on, write_card_file)
from gradfaith_tui.models.weights_file import file_kind, fit_state, read_state

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Classifier(nn.Module):
    """Takes (B, 1, H, W) grey slices in [0, 1]; normalises and repeats them to RGB for the timm net.

    Keeping normalisation inside the model means masking for Faith and CAMs both live in image space.
    """

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """What the timm net takes: three normalised channels."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))


def is_arch(arch: object) -> bool:
    """Whether timm knows arch by name."""
    import timm

    return isinstance(arch, str) and bool(arch) and timm.is_model(arch)


def check_arch(arch: str) -> None:
    if not is_arch(arch):
        raise GradfaithError(f"--models: unknown model '{arch}' (not a timm architecture; try `timm.list_models()`)")


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """An exception as "Type: its first sentence", whole, on one line (the class name alone where it has no
    message); terminal escapes dropped."""
    import re

    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    end = re.search(r"[.!?](\s|$)", text)
    if end:
        text = text[:end.start() + 1]
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"


def pretrained_file_problem(path: Path) -> str | None:
    """Why --pretrained-file cannot be used, from its path and first bytes (as `import` reads a file); None where
    it may be (whether its weights fit the architecture is known once they load)."""
    from gradfaith_tui.models.weights_file import file_kind

    if not path.is_file():
        what = "a folder, not a weights file" if path.is_dir() else "not found"
    else:
        try:
            if file_kind(path) is not None:
                return None
            what = "not a weights file (neither safetensors nor a PyTorch file)"
        except OSError as exc:
            what = f"cannot be read ({exc.strerror or exc})"
    return f"--pretrained-file: {path}: {what}"


def build(spec: ModelSpec, img_size: int, pretrained_file: Path | None = None) -> Classifier:
    """Create the timm net for spec; ImageNet weights only from a local file, never from a hub."""
    check_arch(spec.arch)
    kwargs = dict(spec.kwargs)
    problem = None if pretrained_file is None else pretrained_file_problem(Path(pretrained_file))
    if problem:
        raise CheckpointError(problem)
    with _named_by_content(pretrained_file) as file:
        if file is not None:
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(file)))
        return _create(spec, img_size, kwargs, pretrained_file)


@contextmanager
def _named_by_content(path: Path | None) -> Iterator[Path | None]:
    """The weights file under a name timm reads it by: timm picks its reader from the name (.safetensors, else
    torch.load), so a safetensors file named .pth or .weights (or the reverse) is linked under the right one
    for the call, as `import` reads files by their content."""
    try:
        kind = None if path is None else file_kind(Path(path))
    except OSError:  # unreadable: timm's own read says so, in build's one line
        kind = None
    if kind is None or (kind == "safetensors") == str(path).endswith(".safetensors"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gradfaith-weights-") as tmp:
        named = Path(tmp) / ("weights.safetensors" if kind == "safetensors" else "weights.pth")
        try:
            named.symlink_to(Path(path).resolve())
        except OSError:  # no symlinks here (some Windows accounts): a copy reads the same
            shutil.copyfile(path, named)
        yield named


def _create(spec: ModelSpec, img_size: int, kwargs: dict, pretrained_file: Path | None) -> Classifier:
    import timm

    try:
        try:  # transformers size their position embeddings to the input (ViT, PiT, CaiT, VOLO, Swin...)
            net = timm.create_model(spec.arch, num_classes=len(CLASS_NAMES), img_size=img_size, **kwargs)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
            net = timm.create_model(spec.arch, num_classes=len(CLASS_NAMES), **kwargs)  # a CNN: any input size
    except Exception as e:
        if pretrained_file is None:
            if "pretrained tag" in str(e):  # 'resnet50.nosuch': timm knows the model, not that tag
                raise GradfaithError(f"'{spec.arch}': {describe_error(e)}") from None
            raise
        # load_state_dict's error lists every layer on lines of its own: its heading and first finding say enough
        text = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or "no message"
        raise CheckpointError(f"--pretrained-file: {pretrained_file}: not usable as {spec.arch} weights "
                              f"({type(e).__name__}: {text[:240]})") from None
    return Classifier(net)


def checkpoint_dir(root: Path, spec: ModelSpec, seed: int) -> Path:
    return Path(root) / spec.name / f"seed{seed}"


def versions() -> dict[str, str]:
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()}


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Safetensors written to a temporary file and renamed: a crash never leaves half a file."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in state.items()}
    replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def write_card(directory: Path, card: dict, weights_sha1: str | None = None, name: str = CARD_NAME) -> None:
    """The card for the weights already at directory/model.safetensors, stamped with their hash (weights_sha1:
    already taken of the same bytes); name: NEXT_CARD_NAME for a card that waits for its weights."""
    write_card_file(directory, {**card, "weights_sha1": weights_sha1 or file_hash(directory / WEIGHTS_NAME),
                                "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}, name)


def save_checkpoint(model: Classifier, directory: Path, card: dict) -> None:
    """Weights then card, each atomic: a crash never leaves half a checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model.net.state_dict(), directory / WEIGHTS_NAME)
    write_card(directory, card)


def load_weights(model: Classifier, path: Path, state: dict | None = None) -> None:
    """Load weights into the timm net; a mismatch names the layers that do not fit."""
    state = fit_state(read_state(path) if state is None else state, model.net.state_dict(), path,
                      type(model.net).__name__)
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    broken += [k for k, v in state.items() if k.endswith("running_var") and bool((v < 0).any())]
    if broken:  # such a net answers NaN for every case: say so here, not as a crash deep in the audit
        raise CheckpointError(f"{path}: weights hold NaN, inf or a negative running variance "
                              f"({', '.join(broken[:4])}{' ...' if len(broken) > 4 else ''}); retrain or re-export them")
    model.net.load_state_dict(state)


def load_checkpoint(directory: Path, fingerprint: str | Sequence[str] | None = None,
                    force: bool = False) -> tuple[Classifier, dict]:
    """Model and card from a checkpoint folder; refuses one trained on other data unless forced (fingerprint:
    the data's, or all of them, Prepared.fingerprints)."""
    card = read_card(directory)  # its shape checked there
    card_path = Path(directory) / CARD_NAME
    if fingerprint is not None and not trained_on(card, fingerprint) and not force:
        raise CheckpointError(f"{directory}: trained {other_data(card, fingerprint)}; retrain, or pass --force")
    if not is_arch(card["arch"]):
        raise CheckpointError(f"{card_path}: unknown model '{card['arch']}' (not a timm architecture; try "
                              f"`timm.list_models()`)")
    try:
        model = build(spec_from_card(card), card["img_size"])
    except GradfaithError:
        raise
    except Exception as exc:  # constructor arguments the architecture does not take, say
        raise CheckpointError(f"{card_path}: cannot build {card['arch']} from its kwargs and img_size "
                              f"({describe_error(exc)})") from None
    load_weights(model, Path(directory) / WEIGHTS_NAME)
    model.eval()
    return model, card


def spec_from_card(card: dict) -> ModelSpec:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in card.get("kwargs", {}).items()}
    return ModelSpec(card["name"], card["arch"], card.get("family", family_of(card["arch"])), kwargs)
