"""Models of a cache that were trained on other data or another split than its test cases, which --force let
past the check: their test numbers may include cases they trained on. Torch-free (the report and the explorer)."""

from __future__ import annotations

import json
import sqlite3

from gradfaith_tui.store.files import column_names, table_names


def trained_elsewhere(con: sqlite3.Connection) -> dict[str, str]:
    """model id -> what it was trained on, in words ("on another split of these data (...)"), by model id: what
    precompute recorded (caches from before lack the column), else evaluate's marks in its stored results."""
    out: dict[str, str] = {}
    held = {m for (m,) in con.execute("SELECT model_id FROM models")}
    if "evaluation" in table_names(con):
        for model_id, body in con.execute("SELECT model_id, body FROM evaluation"):
            try:
                body = json.loads(body or "{}")
            except ValueError:
                continue
            if model_id in held and isinstance(body, dict) and body.get("trained_on_other_data"):
                out[model_id] = f"on other data (fingerprint {body['trained_on_other_data']})"
            elif model_id in held and isinstance(body, dict) and body.get("trained_on_other_split"):
                out[model_id] = f"on another split of these data (split {body['trained_on_other_split']})"
    if "trained_elsewhere" in column_names(con, "models"):  # precompute's words, with both values, win
        out.update(con.execute("SELECT model_id, trained_elsewhere FROM models WHERE trained_elsewhere IS NOT NULL"))
    return dict(sorted(out.items()))
