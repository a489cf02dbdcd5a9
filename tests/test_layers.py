"""The package's folders are its layers: imports point down the list below, never up, and the
import graph has no cycle (docs/architecture.md draws the same picture)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kdrun"

# Highest first. A module may import its own layer's modules and any layer below it.
LAYERS = [
    ("cli", ["kdrun.cli", "kdrun.__main__"]),
    ("pipeline", ["kdrun.pipeline"]),
    ("preflight", ["kdrun.preflight"]),
    ("report", ["kdrun.report", "kdrun.loggers"]),
    ("stages", ["kdrun.stages", "kdrun.transfer"]),
    ("training", ["kdrun.train", "kdrun.episode_inputs"]),
    ("components", ["kdrun.data", "kdrun.models", "kdrun.losses"]),
    ("store", ["kdrun.store", "kdrun.config"]),
    ("helpers", ["kdrun.measure", "kdrun.runtime", "kdrun.optimizers", "kdrun.errors"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kdrun_imports(path: Path) -> set[str]:
    """Every kdrun module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kdrun")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kdrun"):
            found.add(node.module)
    return found


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    return {module_name(p): kdrun_imports(p) for p in PACKAGE.rglob("*.py")}


def test_top_level_holds_at_most_twelve_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_every_import_points_down_or_sideways():
    upward = [
        f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for mod, deps in graph().items()
        if mod != "kdrun"
        for dep in deps
        if dep not in ("kdrun", "kdrun.conf") and layer_of(dep) < layer_of(mod)
    ]
    assert not upward, "\n".join(upward)


def test_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(edges.get(mod, ())):
            if dep != mod and state.get(dep) == 1:
                raise AssertionError(" -> ".join([*path, mod, dep]))
            if dep != mod and dep in edges and dep not in state:
                visit(dep, [*path, mod])
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [])
