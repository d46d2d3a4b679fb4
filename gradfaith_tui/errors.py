"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""


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


def is_out_of_memory(e: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA and other accelerators), Python's MemoryError, or a CPU allocation that
    failed: a --batch-size too large for the machine, which a smaller one fixes. (No torch import here.)"""
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)))
