"""The key an explanation is stored under: every input that changes its maps or metrics.

Torch-free, so `demo` can tell a current cache from a stale one without loading any model.
"""

from __future__ import annotations

import hashlib
import json


# Raised whenever the stored metrics change in set or definition, so older entries count as stale and are
# recomputed rather than shown beside new ones. 2: the body-only counterfactual, the planted-marker truth.
# 3: the lungs-only counterfactual fills with --baseline (it was always black). 4: flat maps point nowhere
# and ties favour no place (pointing game, rank accuracy, heat shares, Consist); tie-aware sanity ranks.
METRICS_VERSION = 4
# Consist is recomputed from the stored maps by every precompute, so its rule is kept in each explanation's
# settings (as "consist_rule") rather than in the key (a change of it needs no new maps). "same-class": a seed whose map explains another class
# than the reference seed's is left out of the case (eq. 6); before it, every seed counted.
CONSIST_RULE = "same-class"
# The metrics --deep adds, versioned apart so a change to them recomputes only --deep explanations.
# 2: Faith's control, the map's cells shuffled (faith_shuffled). 3: the control's places drawn per case (not per
# batch row), its drop the mean of four draws.
DEEP_VERSION = 3


def explanation_key(checkpoint: str | None, fingerprint: str, method: str, layer: str, tau: float, baseline: str,
                    target: str, deep_steps: int, engine: str = "fast") -> str:
    """engine: it picks the Grad-CAM implementation (the fused one, or pytorch-grad-cam's); the other methods
    have one each. The default leaves the key as it was before the engine was part of it."""
    raw = json.dumps([checkpoint, fingerprint, method, layer, tau, baseline, target, deep_steps]
                     + ([METRICS_VERSION] if METRICS_VERSION > 1 else [])  # version 1 keys stay as they were
                     + (["library"] if method == "gradcam" and engine == "library" else [])
                     + ([f"deep{DEEP_VERSION}"] if deep_steps and DEEP_VERSION > 1 else []))
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def checkpoint_identity(card: dict) -> str | None:
    """What a model's results are keyed by: its weights, and the input size they run at. `import --force` can
    bind the same file to another --img-size, and a CNN then gives other maps and predictions."""
    sha = card.get("weights_sha1")
    return None if sha is None else f"{sha}@{card.get('img_size')}"
