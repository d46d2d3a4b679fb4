"""Imports point one way along the data flow: data -> models -> cam -> metrics -> store -> tui/report -> cli."""

import ast
from pathlib import Path

import gradfaith_tui

STAGE = {"__init__": 0, "config": 0, "errors": 0, "locks": 0, "data": 1, "models": 2, "cam": 3, "metrics": 4, "store": 5,
         "freshness": 6, "pipeline": 6, "tui": 7, "report": 7, "cli": 8, "__main__": 9}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_no_stage_imports_a_later_one_or_a_sibling():
    root = Path(gradfaith_tui.__file__).parent
    wrong = []
    for f in sorted(root.rglob("*.py")):
        here = f.relative_to(root).parts[0].removesuffix(".py")
        assert here in STAGE, f"{f}: a new top-level module needs a place in STAGE"
        for name in _imports(f):
            parts = name.split(".")
            if parts[0] != "gradfaith_tui" or len(parts) < 2 or parts[1] == here:
                continue
            there = parts[1]
            if STAGE[there] > STAGE[here] or (STAGE[there] == STAGE[here] and STAGE[here] > 0):
                wrong.append(f"{f.relative_to(root)} imports {name}")
    assert not wrong, "\n".join(wrong)
