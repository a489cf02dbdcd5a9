"""Multirun sweeps through the console script: summaries, one teacher, parallel jobs, kills."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_cli import KDRUN, kdrun

pytestmark = pytest.mark.slow

SWEEP = ["-m", "experiment=smoke", "shots=1,4", "loss.alpha=0.5,0.9", "device.threads=1"]
JOBS = 4  # two shot counts x two alphas: one teacher, four students


def teacher_trainings(sweep_dir: Path) -> int:
    return sum(log.read_text().count("teacher: training") for log in sweep_dir.rglob("kdrun.log"))


def summary_rows(sweep_dir: Path) -> list[dict]:
    return list(csv.DictReader((sweep_dir / "summary.csv").open()))


def by_overrides(rows: list[dict]) -> dict[str, tuple]:
    return {r["overrides"]: (r["teacher_acc"], r["baseline_acc"], r["student_acc"]) for r in rows}


def test_serial_and_parallel_sweeps_train_one_teacher_and_agree(tmp_path):
    env = {"KDRUN_CACHE_DIR": str(tmp_path / "cache-serial")}
    serial = kdrun(*SWEEP, "hydra.sweep.dir=serial", cwd=tmp_path, env=env)
    assert serial.returncode == 0, serial.stderr[-3000:]
    assert len(summary_rows(tmp_path / "serial")) == JOBS
    assert (tmp_path / "serial" / "summary.md").exists()
    assert (tmp_path / "serial" / "summary.png").exists()
    assert teacher_trainings(tmp_path / "serial") == 1

    env = {"KDRUN_CACHE_DIR": str(tmp_path / "cache-parallel")}
    parallel = kdrun(
        *SWEEP,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=parallel",
        cwd=tmp_path,
        env=env,
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert teacher_trainings(tmp_path / "parallel") == 1  # across processes
    assert by_overrides(summary_rows(tmp_path / "parallel")) == by_overrides(
        summary_rows(tmp_path / "serial")
    )

    report = subprocess.run(
        [str(Path(KDRUN).with_name("kdrun-report")), "serial", "parallel", "--out", "both"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert report.returncode == 0, report.stderr
    assert len(summary_rows(tmp_path / "both")) == 2 * JOBS


def test_a_killed_parallel_sweep_completes_on_rerun(tmp_path):
    args = [
        KDRUN,
        *SWEEP,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sweep",
    ]
    env = {**os.environ, "KDRUN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # No deadline: a loaded machine is slow, not wrong; the sweep ending first fails below.
    while proc.poll() is None and len(list(tmp_path.glob("sweep/*/metrics.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.parent.name for p in tmp_path.glob("sweep/*/metrics.json")}
    assert 2 <= len(finished_before) < JOBS, "the kill should land mid-sweep"

    rerun = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(summary_rows(tmp_path / "sweep")) == JOBS
    for job in finished_before:
        assert "reusing it" in (tmp_path / "sweep" / job / "kdrun.log").read_text()
    assert teacher_trainings(tmp_path / "sweep") == 1
