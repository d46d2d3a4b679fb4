"""Which class the shown maps explain, in words: each shown column's own explanation settings decide it (a
cache may hold an older --target pred run of one model beside a later --target true run of another, and the
stored config is only the last run's)."""

from __future__ import annotations

from gradfaith_tui.config import CLASS_AGNOSTIC_METHODS
from gradfaith_tui.store.reader import CacheReader


def targets(reader: CacheReader) -> dict[str, str]:
    """Shown model name -> "pred" or "true", from the settings its explanation was made with."""
    return {c.model.name: reader.settings(c.expl_id).get("target", "pred") for c in reader.columns
            if c.expl_id is not None}


def kind(method: str, target: str) -> str:
    """"none" (maps of no class), "true" or "pred"."""
    return "none" if method in CLASS_AGNOSTIC_METHODS else "true" if target == "true" else "pred"


def kinds(method: str, targets: dict[str, str]) -> set[str]:
    return {kind(method, t) for t in targets.values()}


_EXPLAINING = {"pred": "the predicted class", "true": "the true class"}


def explaining(method: str, targets: dict[str, str]) -> str:
    """A clause for captions: "explaining the predicted class", or which models explain which."""
    if method in CLASS_AGNOSTIC_METHODS:
        return f"of no class ({method} maps are class-agnostic)"
    by: dict[str, list[str]] = {}
    for name, t in targets.items():
        by.setdefault(kind(method, t), []).append(name)
    if len(by) <= 1:
        return f"explaining {_EXPLAINING[next(iter(by), 'pred')]}"
    return "explaining " + " or ".join(f"{_EXPLAINING[k]} ({', '.join(names)})" for k, names in sorted(by.items()))


_CONSIST_OVER = {"none": "every seed, as these maps have no class", "true": "every seed, as each explains the true class",
                 "pred": "on cases they predict alike"}


def consist_over(method: str, target: str) -> str:
    """Which seeds' maps Consist compares on a case (pipeline.stored.write_consist's rule), in words."""
    return _CONSIST_OVER[kind(method, target)]


_CONSIST_CASES = {"none": "over every case (these maps have no class)",
                  "true": "over every case (each seed explains the true class)",
                  "pred": "over the cases the seeds predict alike"}


def consist_cases(method: str, targets: dict[str, str]) -> str:
    """The cases Consist's means are over, for every shown model together."""
    return " or ".join(_CONSIST_CASES[k] for k in sorted(kinds(method, targets) or {"pred"}))
