"""A realistic audit cache written without any model: for tests and explorer speed benchmarks.

Every number is drawn, not computed from a network, but the draws keep the relations a real audit
shows: Normal cases have no mask (so LocAcc/IoU are NULL), a map centred on the lesion gets a high
LocAcc, unfaithful maps come with low Faith, and Consist falls as the seeds' maps drift apart.
Everything is vectorised and written through CacheWriter in big batches, so 100,000 cases take
seconds rather than minutes. Torch-free, like the rest of store/.
"""

from __future__ import annotations

from itertools import repeat
from pathlib import Path

import numpy as np

from gradfaith_tui.config import DEMO_SPECS, WRITE_FOLDERS, WRITE_STEMS, ModelSpec
from gradfaith_tui.store.records import CaseInfo, ModelInfo
from gradfaith_tui.store.writer import CacheWriter
from gradfaith_tui.store.keys import CONSIST_RULE
from gradfaith_tui.store.synthetic_results import sanity_rows, suspect_rows, table1_body

_CLASS_P = (0.38, 0.11, 0.51)  # like IQ-OTH/NCCD


def _specs(models: int) -> list[ModelSpec]:
    """The demo specs, repeated with a suffix when more models are asked for than there are."""
    out = []
    for i in range(models):
        s = DEMO_SPECS[i % len(DEMO_SPECS)]
        out.append(s if i < len(DEMO_SPECS) else ModelSpec(f"{s.name}-{i // len(DEMO_SPECS)}", s.arch, s.family, s.kwargs))
    return out


def _case_ids(labels: np.ndarray) -> list[str]:
    counters = [0, 0, 0]
    ids = []
    for lab in labels.tolist():
        counters[lab] += 1
        ids.append(f"{WRITE_FOLDERS[lab]}/{WRITE_STEMS[lab]} ({counters[lab]}).jpg")
    return ids


def _images(rng, size, centre, radius, has_mask) -> tuple[np.ndarray, np.ndarray]:
    """Grey body with two dark lungs, noise, and a bright disc where the case has a lesion."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) * 2 - 1
    body = (yy / 0.8) ** 2 + (xx / 0.95) ** 2 <= 1
    lungs = (((yy + 0.05) / 0.6) ** 2 + ((np.abs(xx) - 0.45) / 0.32) ** 2) <= 1
    base = np.where(body, 110, 10).astype(np.uint8)
    base[lungs] = 35
    n = len(has_mask)
    images = np.empty((n, size, size), np.uint8)
    masks = np.zeros((n, size, size), bool)
    for s in range(0, n, 4096):
        e = min(n, s + 4096)
        d2 = (yy[None] - centre[s:e, 0, None, None]) ** 2 + (xx[None] - centre[s:e, 1, None, None]) ** 2
        disc = (d2 <= radius[s:e, None, None] ** 2) & has_mask[s:e, None, None]
        masks[s:e] = disc
        img = base[None] + rng.integers(0, 24, (e - s, size, size), dtype=np.uint8)
        img[disc] = 215
        images[s:e] = img
    return images, masks


def _maps(rng, centres: np.ndarray, grid: int) -> np.ndarray:
    """Gaussian blobs around the given centres (in [-1, 1]) plus noise, min-max normalised per map."""
    g = (np.arange(grid, dtype=np.float32) + 0.5) / grid * 2 - 1
    d2 = (g[None, :, None] - centres[:, 0, None, None]) ** 2 + (g[None, None, :] - centres[:, 1, None, None]) ** 2
    m = np.exp(-d2 / 0.18) + 0.25 * rng.random((len(centres), grid, grid), dtype=np.float32)
    lo, hi = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
    return ((m - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def build_synthetic_cache(root: Path, n_cases: int, models: int = 5, seeds: int = 2, size: int = 64,
                          grid: int = 8, seed: int = 0) -> Path:
    """Write a cache of n_cases fake slices and `models` x `seeds` fake models; returns root.

    The ViT-like model gets a grid x grid map, the CNN-like ones grid/2 (as in the demo profile). Each model
    also gets a Table I from its predictions and ~5% suspect cases; each reference seed a sanity check, which
    one model (the middle one) fails.
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # its own stream: the maps and metrics stay what they were
    n = int(n_cases)
    labels = rng.choice(3, n, p=_CLASS_P)
    has_mask = labels != 0
    centre = np.stack([rng.uniform(-0.4, 0.4, n), rng.choice([-1, 1], n) * rng.uniform(0.3, 0.6, n)], 1).astype(np.float32)
    radius = rng.uniform(0.08, 0.2, n).astype(np.float32)
    images, masks = _images(rng, size, centre, radius, has_mask)
    ids = _case_ids(labels)
    order = np.argsort(np.array(ids))  # cases sorted by id, as the pipeline stores them
    labels, has_mask, centre, images, masks = labels[order], has_mask[order], centre[order], images[order], masks[order]
    ids = [ids[i] for i in order]
    cases = [CaseInfo(c, int(lab), f"P{i // 10:05d}", bool(h), None)
             for i, (c, lab, h) in enumerate(zip(ids, labels.tolist(), has_mask.tolist()))]
    config = {"data": "synthetic", "method": "gradcam", "n_test": n, "synthetic": True,
              "cam": {"method": "gradcam", "tau": 0.5, "baseline": "black"}}
    writer = CacheWriter(root, f"synthetic-{seed}-{n}", f"synthetic-split-{seed}", config, cases, images, masks)
    writer.con.execute("PRAGMA synchronous=OFF")  # a throwaway cache: speed over crash safety
    con = writer.con
    idx_list = list(range(n))
    try:
        specs = _specs(models)
        for m, spec in enumerate(specs):
            skill = rng.uniform(0.55, 0.9)  # how often this architecture looks at the lesion
            g = grid if spec.family.startswith("vit") else max(2, grid // 2)
            look_at_lesion = (rng.random(n) < skill) & has_mask
            seed_centres = []
            expl_ids = []
            for k in range(seeds):
                info = ModelInfo(f"{spec.name}/seed{k}", spec.name, spec.arch, spec.family, spec.describe(), k, k == 0, size)
                writer.add_model(info, f"synthetic-{spec.name}-{k}", {"name": spec.name, "seed": k, "synthetic": True})
                expl_id = writer.explanation(info.model_id, "gradcam", "synthetic", f"synthetic/{info.model_id}", (g, g),
                                             {"tau": 0.5, "baseline": "black", "target": "pred"})
                expl_ids.append(expl_id)
                jitter = rng.normal(0, 0.12 + 0.1 * k, (n, 2)).astype(np.float32)
                wander = rng.uniform(-0.9, 0.9, (n, 2)).astype(np.float32)
                c = np.where(look_at_lesion[:, None], centre + jitter, wander)
                seed_centres.append(c)
                maps = _maps(rng, c, g)
                correct = rng.random(n) < skill + 0.08
                preds = np.where(correct, labels, (labels + rng.integers(1, 3, n)) % 3)
                conf = rng.uniform(0.4, 0.99, n)
                other = (1 - conf)[:, None] * np.full((n, 3), 0.5)
                probs = np.where(np.eye(3, dtype=bool)[preds], conf[:, None], other)
                dist = np.sqrt(((c - centre) ** 2).sum(1))
                locacc = np.clip(np.exp(-dist ** 2 / 0.08) + rng.normal(0, 0.08, n), 0, 1)
                locacc = np.where(has_mask, locacc, np.nan)
                faith = np.clip(np.where(look_at_lesion | ~has_mask, 0.35, 0.03) + rng.normal(0, 0.12, n), -0.6, 0.99)
                metrics_all = {"faith": faith, "faith_logit": faith * 3 + rng.normal(0, 0.3, n),
                               "locacc": locacc, "iou": locacc * rng.uniform(0.3, 0.8, n)}
                arr = writer._map(expl_id)
                arr[:] = maps.astype(np.float16)
                arr.flush()
                with con:
                    con.executemany("INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?)", zip(
                        repeat(info.model_id), idx_list, preds.tolist(), conf.tolist(),
                        *(probs[:, j].tolist() for j in range(3))))
                    writer.put_metrics(expl_id, idx_list, metrics_all)
                    con.executemany("INSERT OR REPLACE INTO suspects VALUES (?,?,?,?,?,?)",
                                    suspect_rows(extra, expl_id, info.model_id, ~look_at_lesion))
                    writer.write_evaluation(info.model_id, table1_body(labels, preds))
                    if info.is_ref:
                        con.executemany("INSERT OR REPLACE INTO sanity VALUES (?,?,?,?,?,?)",
                                        sanity_rows(extra, info.model_id, spec.family, m == len(specs) // 2))
            if seeds >= 2:  # Consist: how far each seed's blob drifted from the reference seed's
                drift = np.mean([np.sqrt(((c - seed_centres[0]) ** 2).sum(1)) for c in seed_centres[1:]], axis=0)
                consist = np.clip(np.exp(-drift ** 2 / 0.4) + rng.normal(0, 0.05, n), 0, 1)
                with con:
                    for expl_id in expl_ids:
                        writer.put_metrics(expl_id, idx_list, {"consist": consist})
        with con:  # made-up values, of no older rule
            con.execute("UPDATE explanations SET settings = json_set(COALESCE(NULLIF(settings, ''), '{}'), "
                        "'$.consist_rule', ?)", (CONSIST_RULE,))
    finally:
        writer.close()
    return Path(root)
