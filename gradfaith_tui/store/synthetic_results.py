"""The result tables a real audit adds to a synthetic cache: Table I bodies, suspects and sanity checks.

Drawn, like the rest of the synthetic cache, but shaped as the engine writes them: a Table I computed from
the model's own predictions (with models/table1.py's table1, which imports no torch, as evaluate does), suspects whose
reasons are the documented RULES worded with their values, and cascading-randomisation stages whose Spearman
falls as more of the network is re-initialised. Torch-free.
"""

from __future__ import annotations

import numpy as np

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


def table1_body(labels: np.ndarray, preds: np.ndarray) -> dict:
    """Table I exactly as `evaluate` computes it (the same torch-free function)."""
    from gradfaith_tui.models.table1 import confusion, table1

    return {**table1(confusion(labels, preds)), "n": int(len(labels))}


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
