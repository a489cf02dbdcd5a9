"""A sweep stopped midway leaves a summary of what it finished (issue 22, class 9): the summary
is rewritten as each job ends, the jobs without a record marked "not finished"."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SMOKE_FAST
from tests.test_bad_input import run_cli


def _rows(sweep: Path) -> list[dict]:
    try:
        with (sweep / "summary.csv").open() as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []


def _interrupt_after_first_job(sweep: Path, done: threading.Event) -> None:
    """SIGINT this process (as Ctrl-C would) once a job's row in summary.csv is `ok`: the
    launcher never reaches the end of the multirun, as when the sweep is killed."""
    while not done.is_set():
        if any(r["status"] == "ok" for r in _rows(sweep)):
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_stopped_sweep_has_a_summary_of_its_finished_jobs(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    args = ["-m", *SMOKE_FAST, "shots=1,2,3", "device.threads=1", f"cache_dir={tmp_path / 'c'}"]
    done = threading.Event()
    watcher = threading.Thread(target=_interrupt_after_first_job, args=(sweep, done))
    watcher.start()
    try:
        out = run_cli(args, sweep, monkeypatch)
    finally:
        done.set()
        watcher.join()
    assert out.rc == 130, out.text[-3000:]  # interrupted, not run to its end
    rows = _rows(sweep)
    finished = {p.parent.name for p in sweep.glob("*/metrics.json")}
    assert len(rows) == 3
    assert sum(r["status"] == "ok" for r in rows) == len(finished) >= 1
    unfinished = [r for r in rows if r["status"] != "ok"]
    assert unfinished and all(r["status"] == "not finished" for r in unfinished)
    assert all(r["student_acc"] == "" for r in unfinished)  # no number for a job not run
    assert "shots=" in unfinished[0]["overrides"]
