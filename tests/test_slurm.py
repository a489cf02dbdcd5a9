"""A sweep through `hydra/launcher=kdrun_slurm` on a real one-node Slurm cluster
(scripts/local_slurm.sh): Slurm jobs, one teacher across them, the summary, scancel and re-run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from kdrun.store.storage import PAUSE_ENV
from tests.conftest import SMOKE_FAST
from tests.test_cli import KDRUN
from tests.test_sweeps import summary_rows, teacher_trainings

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local_slurm.sh"
SWEEP = [
    "-m",
    *SMOKE_FAST,
    "shots=1,2",
    "loss.alpha=0.5,0.9",
    "hydra/launcher=kdrun_slurm",
    "hydra.launcher.cpus_per_task=1",  # two jobs at a time on two cores
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=60",
    "hydra.sweep.dir=sweep",
]
PAUSED_JOB = 3  # it stops before writing its metrics.json, and is cancelled there
HANG_GUARD_S = 3600  # not a speed check: a loaded machine is slow, not wrong


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """SLURM_CONF of a running cluster: the one .ci/run started (KDRUN_TEST_SLURM_CONF), or one
    started here by the script and stopped after the tests; skipped, with why, if it cannot."""
    ready = os.environ.get("KDRUN_TEST_SLURM_CONF")
    if ready:
        yield {"SLURM_CONF": ready}
        return
    env = {**os.environ, "KDRUN_SLURM_DIR": str(tmp_path_factory.mktemp("slurm") / "cluster")}
    start = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600
    )
    try:
        if start.returncode != 0:
            why = " ".join(start.stderr.strip().splitlines()[-3:])
            pytest.skip(f"no local Slurm cluster ({SCRIPT.name} start failed): {why}")
        yield {"SLURM_CONF": str(Path(env["KDRUN_SLURM_DIR"]) / "etc" / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=600)


def record(sweep: Path, job: int) -> dict:
    return json.loads((sweep / str(job) / "metrics.json").read_text())


def wait_for_the_pause(proc: subprocess.Popen, sweep: Path) -> None:
    """Until the other jobs have finished and the paused job sits before its rename."""
    log = sweep / str(PAUSED_JOB) / "kdrun.log"
    others = [sweep / str(j) / "metrics.json" for j in range(4) if j != PAUSED_JOB]
    while proc.poll() is None:
        if all(p.exists() for p in others) and log.exists() and PAUSE_ENV in log.read_text():
            return
        time.sleep(0.5)
    pytest.fail(f"the sweep ended (status {proc.returncode}) before its job {PAUSED_JOB} paused")


def test_a_sweep_on_slurm_trains_one_teacher_and_reruns_only_a_cancelled_job(tmp_path, slurm_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDRUN_")}
    env.update(slurm_env, KDRUN_CACHE_DIR=str(tmp_path / "cache"))  # shared by every job
    sweep = tmp_path / "sweep"
    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen(
            [KDRUN, *SWEEP],
            cwd=tmp_path,
            env={**env, PAUSE_ENV: f"*/sweep/{PAUSED_JOB}/metrics.json"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_the_pause(proc, sweep)
            (task_dir,) = sweep.glob(f".submitit/*_{PAUSED_JOB}")  # <array job id>_<task>
            subprocess.run(["scancel", task_dir.name], env=env, check=True, timeout=60)
            proc.wait(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    first = (tmp_path / "first.log").read_text()
    assert proc.returncode != 0, first[-3000:]  # the launcher reports the cancelled job
    state = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", task_dir.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert state.stdout.startswith("CANCELLED"), state.stdout + state.stderr
    assert not (sweep / str(PAUSED_JOB) / "metrics.json").exists()
    done = {j: record(sweep, j)["slurm"] for j in range(4) if j != PAUSED_JOB}

    rerun = subprocess.run(
        [KDRUN, *SWEEP], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600
    )
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    rows = summary_rows(sweep)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert (sweep / "summary.md").exists() and (sweep / "summary.png").exists()
    for job in range(4):
        slurm = record(sweep, job)["slurm"]
        assert slurm["array_task_id"] == str(job) and slurm["job_id"]  # it ran as a Slurm job
        assert slurm["cpus_per_task"] == "1"
        assert "1 CPU threads" in record(sweep, job)["device"]  # the CPUs it asked for
        if job in done:  # finished before the cancel: reused, not run again
            assert slurm == done[job]
            assert "reusing it" in (sweep / str(job) / "kdrun.log").read_text()
        else:  # the cancelled job ran again, in the re-run's array
            assert slurm["array_job_id"] != done[0]["array_job_id"]
    assert teacher_trainings(sweep) == 1  # the cache's lock held across the Slurm jobs
