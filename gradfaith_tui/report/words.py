"""Small helpers for the report's sentences: lists and counts read as English."""

from __future__ import annotations


def and_list(items) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def count(n: int, one: str, many: str | None = None) -> str:
    """"1 case", "3 cases"."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def num(v: float, digits: int = 3, sign: bool = False) -> str:
    """A number to `digits` places; one that rounds to zero prints as 0.000 (+0.000), never -0.000."""
    v = 0.0 if round(v, digits) == 0 else v
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
