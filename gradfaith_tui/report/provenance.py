"""What it takes to reproduce an audit: the cache's identity, its configuration, the models and versions."""

from __future__ import annotations

import json
import platform
import sqlite3
from importlib import metadata

from gradfaith_tui import __version__
from gradfaith_tui.store.reader import CacheReader

_PACKAGES = ("numpy", "scipy", "matplotlib", "pillow", "rich", "markdown-it-py")


def environment_versions() -> dict[str, str]:
    """Versions of what wrote the report (torch is named from the model cards, never imported here)."""
    out = {"gradfaith-tui": __version__, "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _card_versions(card: dict) -> str:
    v = card.get("versions")
    if isinstance(v, dict):
        return ", ".join(f"{k} {v[k]}" for k in sorted(v))
    return "–"


def models(reader: CacheReader) -> list[dict]:
    expl = {r["model_id"]: r for r in reader.con.execute(
        "SELECT model_id, layer, map_h, map_w, settings FROM explanations WHERE method=?", (reader.method,))}
    out = []
    rows = {r["model_id"]: r for r in reader.con.execute("SELECT * FROM models")}
    for r in (rows[m.model_id] for m in reader.models):  # the reader's stable model order
        card = json.loads(r["card"] or "{}")
        e = expl.get(r["model_id"])
        out.append({"model_id": r["model_id"], "arch": r["describe"], "family": r["family"], "seed": r["seed"],
                    "reference": bool(r["is_ref"]), "img_size": r["img_size"], "checkpoint": r["checkpoint_hash"],
                    "layer": e["layer"] if e else "–", "map": f"{e['map_h']}x{e['map_w']}" if e else "–",
                    "settings": e["settings"] if e else "–", "trained_with": _card_versions(card)})
    return out


def provenance(reader: CacheReader) -> dict:
    meta = {k: reader.meta[k] for k in sorted(reader.meta) if k != "config"}
    return {"cache": str(reader.root), "n_cases": reader.n_cases, "method": reader.method, "meta": meta,
            "config": reader.config, "models": models(reader), "environment": environment_versions()}
