"""What the cache's rows describe: cases, models, the explorer's columns and rows (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gradfaith_tui.config import PAPER_ARCHS


@dataclass(frozen=True)
class CaseInfo:
    case_id: str
    label: int | None
    patient: str | None
    has_mask: bool
    shortcut: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    name: str
    arch: str
    family: str
    describe: str
    seed: int
    is_ref: bool
    img_size: int


@dataclass(frozen=True)
class Column:
    """One model shown in the explorer: the reference seed of a name, with its explanation."""

    model: ModelInfo
    expl_id: int | None
    method: str


@dataclass
class ModelResult:
    pred: int | None = None
    confidence: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class CaseRow:
    idx: int
    case_id: str
    label: int | None
    patient: str | None
    has_mask: bool
    shortcut: int | None
    results: dict[str, ModelResult]  # by model name

    def worst(self, metric: str) -> float | None:
        vals = [r.metrics.get(metric) for r in self.results.values()]
        vals = [v for v in vals if v is not None]
        return min(vals) if vals else None

    def n_wrong(self) -> int:
        return sum(r.pred is not None and self.label is not None and r.pred != self.label for r in self.results.values())


def model_order(m: ModelInfo) -> tuple:
    """The paper's column order (ResNet-50 ... ViT-B/16), then others by name; seeds ascending.

    Stable whatever order the models were registered in, so M1..M5 mean the same in every view.
    """
    fam = PAPER_ARCHS.index(m.family) if m.family in PAPER_ARCHS else len(PAPER_ARCHS)
    return (fam, m.name, m.seed)


def one_reference_each(models: list[ModelInfo], explained: set[str] = frozenset()) -> list[ModelInfo]:
    """The reference of each name: the lowest seed among those explained with the shown method (explained: their
    model ids), else the lowest marked reference. So a cache where a run of other seeds alone marked a second
    one (precompute --seeds 1 on a cache holding seed 0), or explained only seed 1 with another method, shows
    each name once, with maps."""
    refs: dict[str, int] = {}
    for m in models:
        if m.model_id in explained:
            refs[m.name] = min(refs.get(m.name, m.seed), m.seed)
    fallback: dict[str, int] = {}
    for m in models:
        if m.is_ref and m.name not in refs:
            fallback[m.name] = min(fallback.get(m.name, m.seed), m.seed)
    refs.update(fallback)
    return [replace(m, is_ref=refs.get(m.name) == m.seed) for m in models]
