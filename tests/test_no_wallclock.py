"""Tests never assert on wall-clock time: CI machines are loaded and shared (a smoke run that
takes 20 s alone took 152 s there). Speed targets live in benchmarks/ as same-run ratios."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"perf_counter", "monotonic", "time"}  # time.time(), time.perf_counter(), ...
TIMED_NAMES = ("elapsed", "seconds", "duration", "wall")


def _mentions_time(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        func = sub.func if isinstance(sub, ast.Call) else None
        clock = isinstance(func, ast.Attribute) and func.attr in CLOCKS
        if clock and getattr(func.value, "id", "") == "time":
            return True
        name = sub.id if isinstance(sub, ast.Name) else getattr(sub, "value", None)
        if isinstance(name, str) and any(t in name.lower() for t in TIMED_NAMES):
            return True
    return False


def clock_comparisons(source: str) -> list[int]:
    """Line numbers of `assert` statements comparing something timed with `<`, `<=`, `>`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            ordered = any(
                isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in node.test.ops
            )
            if ordered and _mentions_time(node.test):
                lines.append(node.lineno)
    return lines


def test_the_checker_catches_the_patterns_it_is_for():
    timed, key, clock = TIMED_NAMES[0], TIMED_NAMES[1], "time.perf_counter()"
    flagged = [f"{timed} < 60", f"result['{key}'] < 300", f"{clock} - t0 < 5"]
    for expression in flagged:
        assert clock_comparisons(f"assert {expression}") == [1], expression
    assert clock_comparisons("assert len(rows) < 6") == []


def test_no_test_asserts_on_wall_clock_time():
    found = {
        f"{path.name}:{line}"
        for path in TESTS.glob("test_*.py")
        if path.name != Path(__file__).name
        for line in clock_comparisons(path.read_text())
    }
    assert not found, f"wall-clock assertions (move them to benchmarks/): {sorted(found)}"
