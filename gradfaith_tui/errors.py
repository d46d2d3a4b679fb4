"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""

from contextlib import contextmanager


class GradfaithError(Exception):
    """A known, user-fixable problem; the message names the file or option at fault."""

    exit_code = 2


class DataError(GradfaithError):
    """The dataset is missing, unreadable or inconsistent."""


class CheckpointError(GradfaithError):
    """A checkpoint is missing, does not fit its architecture, or belongs to other data."""


class TrainingError(GradfaithError):
    """Training cannot go on (a diverged loss, say); the finished epochs stay on disk."""


class CacheError(GradfaithError):
    """A cache is missing, empty, of another schema version, or stale."""


class PeerStopped(GradfaithError):
    """Under torchrun, another rank stopped (on an error it has printed): this one stops too, quietly."""

    exit_code = 1


def _out_of_memory(e: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA and other accelerators), Python's MemoryError, or a CPU allocation that
    failed: a --batch-size too large for the machine, which a smaller one fixes. (No torch import here.)"""
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)))


@contextmanager
def batch_size_on_out_of_memory(batch_size: int, model_id: str, device: str, kept: str,
                                error: type[GradfaithError] = GradfaithError):
    """Running out of memory inside becomes one line naming the --batch-size to lower; kept: what stays saved."""
    try:
        yield
    except Exception as e:
        if not _out_of_memory(e):
            raise
        raise error(f"--batch-size {batch_size}: {model_id} ran out of memory on {device} (the finished {kept} "
                    f"are kept); try a smaller --batch-size") from None
