"""Precompute: dataset -> checkpoints -> CAMs -> metrics -> cache, resumable batch by batch."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gradfaith_tui.config import CamSettings
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import load_split, prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.factory import load_checkpoint
from gradfaith_tui.models.registry import find_checkpoints
from gradfaith_tui.store.cache import CacheWriter, CaseInfo, ModelInfo
from gradfaith_tui.store.exports import write_evaluation_files


def explanation_key(card: dict, fingerprint: str, method: str, layer: str, cam: CamSettings, target: str) -> str:
    raw = json.dumps([card.get("weights_sha1"), fingerprint, method, layer, cam.tau, cam.baseline, target])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def precompute(data: Path, checkpoints: Path, cache: Path, names: list[str] | None = None, seeds: list[int] | None = None,
               cam: CamSettings = CamSettings(), target: str = "pred", target_layer: str | None = None,
               device: str = "cpu", strict: bool = False, force: bool = False, with_timing: bool = True,
               warn: Callable[[str], None] = print,
               progress: Callable[[str, int, int], None] = lambda *a: None) -> Path:
    """Fill the cache with maps, predictions, metrics and Table I for every checkpoint; skip what is done."""
    from gradfaith_tui.cam.layers import find as find_layer
    from gradfaith_tui.cam.methods import cam_batch, upsample
    from gradfaith_tui.metrics.consistency import consist
    from gradfaith_tui.metrics.faithfulness import faith
    from gradfaith_tui.metrics.localization import loc_acc, mask_iou
    from gradfaith_tui.models.evaluate import table1, confusion, timing
    from gradfaith_tui.models.train import to_tensor

    if target not in ("pred", "true"):
        raise GradfaithError(f"--target: '{target}' (choose pred or true)")
    ds = discover(data, strict=strict)
    for w in ds.warnings + ds.problems:
        warn(w)
    ckpts = find_checkpoints(checkpoints, names, seeds)
    split_seeds = {c.card.get("split_seed", 0) for c in ckpts}
    if len(split_seeds) > 1:
        raise CheckpointError(f"--checkpoints: models were trained on different splits (seeds {sorted(split_seeds)})")
    prep = prepare(ds, split_seeds.pop(), warn)
    for c in ckpts:
        if c.card.get("data_fingerprint") != prep.fingerprint and not force:
            raise CheckpointError(f"{c.directory}: trained on other data (fingerprint {c.card.get('data_fingerprint')}, "
                                  f"data now {prep.fingerprint}); retrain, or pass --force")
        if c.card.get("split_hash") not in (None, prep.split_hash) and not force:
            raise CheckpointError(f"{c.directory}: trained on another split of this data; retrain, or pass --force")
    test_samples = sorted(prep.samples(ds, "test"), key=lambda s: s.case_id)
    display = max(c.card["img_size"] for c in ckpts)
    base = load_split(test_samples, display, strict=strict, warn=warn)
    cases = [CaseInfo(s.case_id, s.label, s.patient, bool(h), s.shortcut) for s, h in zip(base.samples, base.has_mask)]
    config = {"data": str(data), "layout": ds.layout, "checkpoints": str(checkpoints), "method": cam.method,
              "cam": asdict(cam), "target": target, "split_seed": prep.split_seed, "n_test": len(cases),
              "dataset_size": len(ds.samples), "class_counts": ds.counts(), "torch": torch.__version__}
    writer = CacheWriter(cache, prep.fingerprint, prep.split_hash, config, cases, base.images, base.masks)
    try:
        by_size = {display: base}
        refs = {}
        for c in ckpts:  # the lowest seed of each name is the reference for Consist
            refs.setdefault(c.card["name"], c.card["seed"])
        expl_of: dict[str, int] = {}
        for c in ckpts:
            card = c.card
            size = card["img_size"]
            if size not in by_size:
                by_size[size] = load_split(base.samples, size, strict=True)
            arr = by_size[size]
            model, card = load_checkpoint(c.directory, prep.fingerprint, force=True)
            model.to(device)
            layer = find_layer(model.net, target_layer)
            info = ModelInfo(c.model_id, card["name"], card["arch"], card["family"], card.get("describe", card["arch"]),
                             card["seed"], refs[card["name"]] == card["seed"], size)
            writer.add_model(info, card["weights_sha1"], card)
            key = explanation_key(card, prep.fingerprint, cam.method, layer.name, cam, target)
            grid = cam_batch(model, layer, to_tensor(arr.images[:1], device), np.zeros(1), cam.method)[0].shape[1:]
            expl_id = writer.explanation(c.model_id, cam.method, layer.name, key, grid,
                                         {"tau": cam.tau, "baseline": cam.baseline, "target": target})
            expl_of[c.model_id] = expl_id
            todo = np.array(sorted(set(range(len(cases))) - writer.done(expl_id)), dtype=np.int64)
            progress(c.model_id, len(cases) - len(todo), len(cases))
            for start in range(0, len(todo), cam.batch_size):
                idx = todo[start:start + cam.batch_size]
                x = to_tensor(arr.images[idx], device)
                with torch.no_grad():
                    logits = model(x)
                tgt = logits.argmax(1).cpu().numpy() if target == "pred" else arr.labels[idx]
                maps, _ = cam_batch(model, layer, x, tgt, cam.method)
                up = upsample(maps, size).to(device)
                f_prob, f_logit = faith(model, x, logits, up, torch.as_tensor(tgt, device=device), cam.baseline)
                up_np = up.cpu().numpy()
                probs = torch.softmax(logits.float(), 1).cpu().numpy()
                writer.write_batch(expl_id, c.model_id, idx, maps, probs.argmax(1), probs, {
                    "faith": f_prob.cpu().numpy(), "faith_logit": f_logit.cpu().numpy(),
                    "locacc": loc_acc(up_np, arr.masks[idx], cam.tau), "iou": mask_iou(up_np, arr.masks[idx], cam.tau)})
                progress(c.model_id, len(cases) - len(todo) + start + len(idx), len(cases))
            if not len(todo) and writer.has_evaluation(c.model_id):
                continue  # nothing new for this model: keep its stored Table I and timing
            preds = writer.con.execute("SELECT idx, pred FROM predictions WHERE model_id=? ORDER BY idx",
                                       (c.model_id,)).fetchall()
            body = table1(confusion(arr.labels[[r[0] for r in preds]], np.array([r[1] for r in preds])))
            body["n"] = len(preds)
            if with_timing:
                body["timing"] = timing(model, size, device)
            writer.write_evaluation(c.model_id, body)
        _write_consist(writer, ckpts, refs, expl_of, display, cam.tau, upsample, consist)
        bodies = {r[0]: json.loads(r[1]) for r in writer.con.execute("SELECT model_id, body FROM evaluation ORDER BY model_id")}
        write_evaluation_files(cache, bodies)  # the same numbers as `evaluate` writes, for scripts
    finally:
        writer.close()
    return Path(cache)


def _write_consist(writer, ckpts, refs, expl_of, size, tau, upsample, consist) -> None:
    """Consist per case and architecture name, stored on every seed's explanation of that name."""
    groups: dict[str, list] = defaultdict(list)
    for c in ckpts:
        groups[c.card["name"]].append(c)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: c.card["seed"] != refs[name])  # reference first
        maps = [writer.read_maps(expl_of[c.model_id]) for c in members]
        ok = np.all([~np.isnan(m).any(axis=(1, 2)) for m in maps], axis=0)
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        ups = [upsample(m[idx], size).numpy() for m in maps]
        values = consist(ups, tau, ref=0)
        for c in members:
            writer.set_metrics(expl_of[c.model_id], idx, {"consist": values})
