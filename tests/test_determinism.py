"""Same config and seed on CPU, two separate processes, nothing shared: identical numbers."""

from __future__ import annotations

import csv
import json

import pytest

from kdrun.measure.cost import without_clocks
from tests.conftest import SMOKE_FAST
from tests.test_cli import kdrun

# What legitimately differs: wall-clock times, where the runs wrote and cached (the config and its
# digest cover cache_dir), cache counters, and the record's checksums (history.csv has times).
VOLATILE = ("timing", "out_dir", "cache", "config_digest", "config", "files", "checksum")


def run_once(tmp_path, name: str) -> tuple[dict, list[dict]]:
    env = {"KDRUN_CACHE_DIR": str(tmp_path / f"cache-{name}")}  # nothing reused between runs
    args = [*SMOKE_FAST, "teacher.epochs=2", "episodes=2", "device.threads=1"]
    proc = kdrun(*args, f"hydra.run.dir={name}", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["cache"]["teacher"]["miss"] == 1  # trained here, not reused from elsewhere
    history = list(csv.DictReader((tmp_path / name / "history.csv").open()))
    return metrics, [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
def test_two_processes_give_identical_metrics(tmp_path):
    first, first_history = run_once(tmp_path, "a")
    second, second_history = run_once(tmp_path, "b")
    for key in VOLATILE:
        first.pop(key), second.pop(key)
    first, second = without_clocks(first), without_clocks(second)  # clocks are read, not computed
    assert first == second  # every report, per-episode record and kd_gain, to the last bit
    assert len(first["episodes"]) == 2 and first["teacher"]["source"] == "trained"
    assert first_history == second_history  # and every epoch's loss, accuracy and lr
