"""SIGKILL at any moment, then the same command again: the final metrics equal an uninterrupted
run's. Runs scripts/chaos.py (teacher, soft-label write, student and sweep kills)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chaos.py"


def load_chaos():
    spec = importlib.util.spec_from_file_location("kdrun_chaos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_killed_runs_and_sweeps_complete_on_rerun_with_the_uninterrupted_metrics(tmp_path):
    result = load_chaos().main(tmp_path)  # raises AssertionError naming the failed kill
    assert result["notes"][0].startswith("teacher: resuming from epoch ")
