"""Weights files as users have them: safetensors or PyTorch files (never unpickled), inside the wrappers of
common training scripts, with the key prefixes of DDP, torch.compile and Lightning; matched to a net's keys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from gradfaith_tui.errors import CheckpointError

WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net")  # dict keys training scripts nest under
OPTIONAL = ("num_batches_tracked",)  # BatchNorm's counter: absent from many exported files, unused in eval


def file_kind(path: Path) -> str | None:
    """'safetensors' or 'torch' from the file's first bytes (not its name, which may be anything); None for
    neither."""
    with open(path, "rb") as f:
        head = f.read(10)
    if len(head) == 10 and head[8:10] == b'{"':  # 8-byte header length, then the JSON header
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip, or its legacy pickle stream
        return "torch"
    return None


def _kind(path: Path) -> str:
    kind = file_kind(path)
    if kind is None:
        raise CheckpointError(f"{path}: not a weights file (neither safetensors nor a PyTorch file)")
    return kind


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a PyTorch file read with weights_only=True (never unpickles objects),
    taken out of the dicts training scripts wrap them in."""
    import pickle
    import re
    import warnings

    from gradfaith_tui.models.factory import describe_error

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (give the weights file itself)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: unreadable weights (the file is empty)")
    try:
        if _kind(path) == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # e.g. a note on the pickle protocol, printed before our one line
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:  # weights_only refused what it would have to unpickle
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"a pickled {found.group(1)}" if found else "pickled Python objects"
        raise CheckpointError(f"{path}: unreadable weights: the file holds {what}, and weights are read with "
                              f"weights_only=True, which never unpickles objects; save a plain state dict of tensors "
                              f"(torch.save(model.state_dict(), path)) or a .safetensors file") from None
    except Exception as exc:  # both libraries raise their own error types
        raise CheckpointError(f"{path}: unreadable weights ({describe_error(exc)})") from None
    while isinstance(state, dict) and not _tensors(state):
        inner = next((state[k] for k in WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not _tensors(state):
        keys = ", ".join(map(str, list(state)[:6])) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a state dict of tensors (found: {keys})")
    return state


def _tensors(state: dict) -> bool:
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def _prefixes(keys) -> list[str]:
    """Dotted prefixes of up to three parts that many keys share ('module.', '_orig_mod.', 'model.net.'...)."""
    counts = Counter(".".join(k.split(".")[:d]) + "." for k in keys for d in (1, 2, 3) if k.count(".") >= d)
    return [p for p, n in counts.most_common() if n > 1]


def fit_state(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path,
              arch: str) -> dict[str, torch.Tensor]:
    """state with its keys renamed to own's: the file as it is, or the part under one shared prefix (a DDP,
    torch.compile or Lightning wrapper; other entries there, a loss's weights say, are left out). A mismatch
    names the layers that do not fit."""
    keys = set(own)
    needed = {k for k in keys if not k.endswith(OPTIONAL)}
    best = state
    for prefix in ["", *_prefixes(state)]:
        cand = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if needed <= cand.keys() <= keys:
            best = cand
            break
        if prefix and all(k.startswith(prefix) for k in state) and len(cand.keys() & keys) > len(best.keys() & keys):
            best = cand  # the closest for the message below
    state = {**{k: v for k, v in own.items() if k.endswith(OPTIONAL) and k not in best}, **best}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        # A ViT's position embeddings are sized by its input: a mismatch there alone is the input size
        hint = ("; the position embeddings fit another input size: check --img-size"
                if wrong and all("pos_embed" in k for k in wrong) and not missing and not unexpected else "")
        raise CheckpointError(f"{path}: weights do not fit {arch} ({'; '.join(parts)}){hint}")
    return state
