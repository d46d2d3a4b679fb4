"""Saving each finished epoch without stalling training: copy the state off the device, write it in the background.

A paper-size model's weights plus AdamW state are 0.3-1 GB per epoch (ViT-B: 1.1 s to write on our disk),
longer than an epoch of 700 images takes on an H100, so writing inline would dominate the protocol's time.
On CUDA the copy is taken at the epoch's end (pinned buffers, reused) and written by a background thread,
one write in flight at a time. On the CPU the write stays inline: there the writer would take cores and
the interpreter lock from training (measured slower on 2 cores). Either way two slots alternate: a run
killed mid-write still finds the previous epoch whole, pointed at by the state file.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from gradfaith_tui.errors import TrainingError
from gradfaith_tui.models.card import replace_atomically

STATE_NAME = "train_state.json"
SLOTS = ("-0", "-1")


def weights_name(slot: str) -> str:
    return f"last{slot}.safetensors"  # slot "" is the single-slot layout of earlier versions


def optim_name(slot: str) -> str:
    return f"optim{slot}.pt"


def read_resume_state(out: Path) -> dict | None:
    """The saved state with the files it points at, or None where there is nothing whole to resume from.

    A state file that is there but damaged raises TrainingError naming it: the finished epochs it points at
    are someone's work, never dropped silently (--restart skips reading it)."""
    path = out / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        state = exc
    why = f"{state.__class__.__name__}" if isinstance(state, Exception) else _state_problem(state)
    if why is not None:
        raise TrainingError(f"{path}: unreadable resume state{f' ({why})' if why else ''}; restore it, or pass "
                            f"--restart to train from scratch (the finished epochs are discarded)")
    slot = state.get("slot", "")
    missing = [out / name for name in (weights_name(slot), optim_name(slot)) if not (out / name).is_file()]
    if not missing:
        return state
    planned = state.get("config", {}).get("epochs") if isinstance(state.get("config"), dict) else None
    if isinstance(planned, int) and state["epoch"] >= planned:
        return None  # a finished run: its resume files were dropped on purpose
    done = state["epoch"]
    raise TrainingError(f"{missing[0]}: missing; {STATE_NAME} resumes the run after its {done} finished "
                        f"epoch{'s' if done != 1 else ''} from it; restore it, or pass --restart to train from scratch "
                        f"(the finished epochs are discarded)")


def _state_problem(state) -> str | None:
    """Why a parsed state cannot be resumed from ("" where it is not even an object), or None where it can: each
    finished epoch adds one history row, and the run never goes past its --epochs. Resuming from a state that
    breaks these would crash mid-run or skip the training and drop the saved epochs."""
    if not isinstance(state, dict):
        return ""
    epoch, history, best = state.get("epoch", 0), state.get("history", []), state.get("best")
    if type(epoch) is not int or epoch < 0 or not isinstance(state.get("slot", ""), str):
        return "epoch or slot"
    if not isinstance(history, list) or len(history) != epoch:
        return f"epoch {epoch} with {len(history) if isinstance(history, list) else 'no'} history rows"
    if not all(isinstance(r, dict) and _scores(r) and r.keys() == history[0].keys() for r in history):
        return "history rows without their validation scores, or of different columns"
    if best is not None and not (isinstance(best, dict) and _scores(best)):
        return "best epoch"
    planned = state.get("config", {}).get("epochs") if isinstance(state.get("config"), dict) else None
    if isinstance(planned, int) and epoch > planned:
        return f"epoch {epoch} of {planned}"
    return None


def _scores(row: dict) -> bool:
    """An epoch's row holds the validation scores model selection compares, as numbers."""
    return all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in ("val_acc", "val_loss"))


def link_or_copy(src: Path, dst: Path) -> None:
    """dst becomes src's content; a hard link costs no I/O and survives src being replaced later."""
    def write(tmp: Path) -> None:
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)

    replace_atomically(dst, write)


class HostCopy:
    """Copies nested state (dicts, lists, tensors) to the host, reusing pinned buffers for device tensors."""

    def __init__(self) -> None:
        self._bufs: list[torch.Tensor] = []

    def __call__(self, tree):
        self._i = 0
        copied = self._copy(tree)
        if any(b.is_pinned() for b in self._bufs):
            torch.cuda.synchronize()  # the non-blocking copies must land before the writer reads them
        return copied

    def _copy(self, obj):
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj.detach())
        if isinstance(obj, dict):
            return {k: self._copy(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v) for v in obj)
        return obj  # numbers, strings, None: immutable

    def _tensor(self, t: torch.Tensor) -> torch.Tensor:
        i, self._i = self._i, self._i + 1
        if i == len(self._bufs):
            self._bufs.append(torch.empty(0))
        buf = self._bufs[i]
        if buf.shape != t.shape or buf.dtype != t.dtype:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
            self._bufs[i] = buf
        buf.copy_(t, non_blocking=t.is_cuda)
        return buf


class EpochSaver:
    """At most one write in flight; wait() before reading the files, and on the way out (close)."""

    def __init__(self, background: bool) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="epoch-saver") if background else None
        self._pending: Future | None = None
        self._copy = HostCopy()

    def next_slot(self, state: dict) -> str:
        return SLOTS[1] if state.get("slot") == SLOTS[0] else SLOTS[0]

    def snapshot(self, weights: dict, optim: dict) -> tuple[dict, dict]:
        """Host copies the writer can take its time over, or the live state where the write is inline."""
        if self._pool is None:
            return weights, optim
        self.wait()  # the buffers are reused: the previous write must be done with them
        # One call for both trees: each call starts over at the first buffer, so two calls would copy the
        # optimiser's moments into the weights' buffers wherever their shapes match (a BatchNorm's running
        # variance became a first moment, negative: NaN in eval mode).
        return self._copy((weights, optim))

    def submit(self, job, *args) -> None:
        self.wait()
        if self._pool is None:
            job(*args)
        else:
            self._pending = self._pool.submit(job, *args)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # a failed write surfaces here, in the training thread

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
