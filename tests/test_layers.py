"""The layers of docs/design.md ("Layers"), held: no module imports one from a layer above
its own (at module level or inside a function), and every top-level module has a layer, so
a new one is placed on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "policyport"

# The table in docs/design.md, ground floor first (a module may import its own floor).
LAYERS = {
    "_errors": 1,
    "_version": 1,
    "_pause": 1,
    "_quiet": 1,
    "_backend": 1,
    "_bounded_json": 1,
    "policy": 2,
    "_publish": 2,
    "tracing": 3,
    "brax": 3,
    "formats": 4,
    "_loading": 4,
    "_noise": 4,
    "checks": 5,
    "_settings": 5,
    "_deployment": 6,
    "_export": 7,
    "sweep": 8,
    "exporters": 8,
    "runtime_checks": 8,
    "_cli": 9,
    "__init__": 10,
    "__main__": 10,
}


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_tops(path: Path) -> set[str]:
    """The top-level policyport modules `path` imports, relative or absolute."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # packages between it and policyport
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "policyport" and len(parts) > 1:
                    tops.add(parts[1])
                elif parts == ["policyport"]:
                    tops.update(alias.name for alias in node.names)
            elif node.level > depth:  # out of its own package, to policyport's top level
                if node.module:
                    tops.add(node.module.split(".")[0])
                else:
                    tops.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "policyport" and len(parts) > 1:
                    tops.add(parts[1])
    return tops


def test_every_module_has_a_layer():
    tops = {_top(path) for path in PACKAGE.rglob("*.py")}
    assert tops <= set(LAYERS), f"place these in docs/design.md's layers: {tops - set(LAYERS)}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        (str(path.relative_to(PACKAGE)), top)
        for path in sorted(PACKAGE.rglob("*.py"))
        for top in sorted(_imported_tops(path))
        if top in LAYERS and LAYERS[top] > LAYERS[_top(path)]
    ]
    assert not upward, f"imports that run up a layer (docs/design.md, 'Layers'): {upward}"
