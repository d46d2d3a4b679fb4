"""The result tables a real audit adds to a synthetic cache: Table I bodies, suspects and sanity checks.

Drawn, like the rest of the synthetic cache, but shaped as the engine writes them: a Table I computed from
the model's own predictions (as models/evaluate.py's table1 does, without its torch import), suspects whose
reasons are the documented RULES worded with their values, and cascading-randomisation stages whose Spearman
falls as more of the network is re-initialised. Torch-free.
"""

from __future__ import annotations

import numpy as np

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.metrics.catalog import FAIL_RHO

SUSPECT_RATE = 0.05  # share of cases per model given a suspect
SANITY_CASES = 8  # what precompute's default --sanity-cases checks
_STAGES = {  # what metrics/sanity.stages groups for each family, output first (one group a stage)
    "resnet": ("fc", "layer4", "layer3", "layer2,layer1,bn1,conv1"),
    "densenet": ("classifier", "features.norm5,features.denseblock3", "features.transition2,features.denseblock2",
                 "features.transition1,features.denseblock1,features.norm0,features.conv0"),
    "efficientnet": ("classifier", "bn2,conv_head", "blocks.6,blocks.5,blocks.4", "blocks.3,blocks.2,blocks.1,"
                     "blocks.0,bn1,conv_stem"),
    "vit": ("head,norm", "blocks.5,blocks.4", "blocks.3,blocks.2", "blocks.1,blocks.0,patch_embed"),
}


def table1_body(labels: np.ndarray, preds: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> dict:
    """Confusion (rows true, columns predicted), per-class one-vs-rest metrics and their macro means."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    tp = np.diag(cm).astype(np.float64)
    fn, fp = cm.sum(1) - tp, cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    div = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)  # noqa: E731  0 where undefined
    sens, spec, prec = div(tp, tp + fn), div(tn, tn + fp), div(tp, tp + fp)
    f1 = div(2 * prec * sens, prec + sens)
    per_class = {name: {"sensitivity": float(sens[k]), "specificity": float(spec[k]), "precision": float(prec[k]),
                        "recall": float(sens[k]), "f1": float(f1[k]), "support": int(cm[k].sum())}
                 for k, name in enumerate(CLASS_NAMES[:n_classes])}
    macro = {m: float(np.mean([v[m] for v in per_class.values()]))
             for m in ("sensitivity", "specificity", "precision", "recall", "f1")}
    macro["accuracy"] = float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0
    return {"macro": macro, "per_class": per_class, "confusion": cm.tolist(), "n": int(len(labels))}


def suspect_rows(rng: np.random.Generator, expl_id: int, model_id: str, off_target: np.ndarray) -> list[tuple]:
    """(expl_id, model_id, idx, rule, value, reason) for about SUSPECT_RATE of the cases, mostly ones whose map
    wandered off the lesion; each gets one rule (a few a second), a value at or above its threshold."""
    from gradfaith_tui.metrics.shortcuts import RULES  # scipy: only when a cache is built

    n = len(off_target)
    weight = np.where(off_target, 4.0, 0.25)
    k = min(n, max(1, int(round(SUSPECT_RATE * n)))) if n else 0
    picked = np.sort(rng.choice(n, k, replace=False, p=weight / weight.sum())) if k else np.array([], np.int64)
    rules = rng.choice(len(RULES), (k, 2), p=_rule_p(len(RULES)))
    second = rng.random(k) < 0.15
    rows = []
    for i, (r1, r2), two in zip(picked.tolist(), rules.tolist(), second.tolist()):
        for r in dict.fromkeys([r1, r2] if two else [r1]):
            rule = RULES[r]
            value = 1.0 if rule.threshold >= 1 or rule.metric.endswith("_flip") else \
                float(rng.uniform(rule.threshold, min(1.0, rule.threshold + 0.35)))
            rows.append((expl_id, model_id, i, rule.name, value, rule.reason.format(value)))
    return rows


def _rule_p(n: int) -> np.ndarray:
    p = np.array([0.35, 0.3, 0.25, 0.1][:n] + [0.1] * max(0, n - 4))
    return p / p.sum()


def sanity_rows(rng: np.random.Generator, model_id: str, family: str, fails: bool,
                method: str = "gradcam") -> list[tuple]:
    """(model_id, method, stage, randomised, spearman, n_cases) for 4 cumulative stages, output first.

    Spearman falls with each stage; a failing model's maps stay correlated with the trained ones to the end."""
    groups = next((g for prefix, g in _STAGES.items() if family.startswith(prefix)), _STAGES["resnet"])
    start, end = (0.95, 0.62) if fails else (0.8, 0.08)
    rhos = np.linspace(start, end, len(groups)) + rng.normal(0, 0.02, len(groups))
    rhos = np.minimum.accumulate(np.clip(rhos, -1, 1))
    if fails:
        rhos = np.maximum(rhos, FAIL_RHO + 0.05)
    done: list[str] = []
    rows = []
    for stage, (group, rho) in enumerate(zip(groups, rhos.tolist()), 1):
        done += group.split(",")
        rows.append((model_id, method, stage, ",".join(done), round(rho, 4), SANITY_CASES))
    return rows
