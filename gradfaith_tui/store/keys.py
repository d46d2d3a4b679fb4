"""The key an explanation is stored under: every input that changes its maps or metrics.

Torch-free, so `demo` can tell a current cache from a stale one without loading any model.
"""

from __future__ import annotations

import hashlib
import json


def explanation_key(weights_sha1: str | None, fingerprint: str, method: str, layer: str, tau: float, baseline: str,
                    target: str, deep_steps: int) -> str:
    raw = json.dumps([weights_sha1, fingerprint, method, layer, tau, baseline, target, deep_steps])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]
