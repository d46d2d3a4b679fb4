"""One writer at a time: a second `train` into the same checkpoint, or a second `precompute` into the same
cache, would interleave its files with the first's (one's card beside the other's weights; one's results
dropped by the other's settings). An advisory lock on a hidden file in the folder refuses the second.

The lock is released by the kernel when its process ends, however it ends, so a killed run never leaves
its folder locked.
"""

from __future__ import annotations

import errno
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gradfaith_tui.errors import GradfaithError

LOCK_NAME = ".gradfaith-lock"
UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}  # flock not offered by the file system


@contextmanager
def writer_lock(folder: Path, what: str, enabled: bool = True):
    """Hold the folder's writer lock for the block; what: the kind of work, for the message."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one writer is the user's to keep
        enabled = False
    if not enabled:
        yield
        return
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first: what this call creates
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, kind = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
            raise GradfaithError(f"{folder}: another {kind or what} is writing there (pid {pid or '?'}); wait for it "
                                 f"to end, or use another folder") from None
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:
                raise
            # a file system without flock (Lustre without -o flock, some NFS): work on unlocked, as before locks
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {what}".encode(), 0)  # the pid, and the kind of work for the message
        try:
            yield
        except BaseException:
            _unmake(folder, made)
            raise
    finally:
        os.close(fd)  # releases the lock


def holder(folder: Path) -> tuple[str, str] | None:
    """(pid, kind of work) of the run holding the folder's writer lock now; None where none does, or it cannot be
    known (no lock file, no flock here). Probed with a shared lock, let go at once; the file is never created."""
    try:
        import fcntl

        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # free: released as the file closes
    except BlockingIOError:
        pid, _, kind = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
        return pid or "?", kind
    except OSError:
        return None
    finally:
        os.close(fd)


def _unmake(folder: Path, made: list[Path]) -> None:
    """A run refused or stopped before it wrote anything into the folder it made: the folder goes, with the
    parents made for it, rather than stay behind holding only the lock (a checkpoint folder that looks started)."""
    try:
        if not made or [p.name for p in folder.iterdir()] != [LOCK_NAME]:
            return
        (folder / LOCK_NAME).unlink()
        for p in made:
            p.rmdir()  # stops at the first that holds anything else
    except OSError:
        pass


@contextmanager
def tidy_lock(folder: Path):
    """Yields whether this process may move or delete files in the folder now: no writer holds it (the lock is
    taken for the block) or locks do not work here. Held by another, or a folder this user cannot write:
    False, and the caller leaves the files alone."""
    held = ExitStack()
    try:
        held.enter_context(writer_lock(folder, "tidy"))
        ok = True
    except (GradfaithError, OSError):
        ok = False
    with held:  # the caller's own errors pass through, the lock released after them
        yield ok
