"""hydra/launcher=kdrun_slurm's failures in one paragraph (issue 22, class 6): no Slurm to
submit to (a fake `sbatch` that fails as a down controller makes it do, or none at all), and a
job that ends without a result (a real submitit job whose process dies)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdrun.cli.slurm_launcher import NO_SLURM_EXIT, UNCOMPLETED_EXIT, launch_or_explain
from tests.test_bad_input import run_cli

submitit = pytest.importorskip("submitit")

SWEEP = ["-m", "experiment=smoke", "shots=1,2", "hydra/launcher=kdrun_slurm"]
DOWN = "sbatch: error: Batch job submission failed: Unable to contact slurm controller"


def _bin(tmp_path: Path, **scripts: str) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name, body in scripts.items():
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    return d


def test_unreachable_controller_is_one_paragraph(tmp_path, monkeypatch):
    fake = _bin(tmp_path, srun="exit 0", sbatch=f'echo "{DOWN} (connect failure)" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    out = run_cli([*SWEEP, f"cache_dir={tmp_path / 'cache'}"], tmp_path / "sweep", monkeypatch)
    assert out.rc == NO_SLURM_EXIT, out.text[-3000:]
    assert "Traceback" not in out.text, out.text[-3000:]
    (error,) = [line for line in out.err.splitlines() if line.startswith("[ERROR]")]
    assert "could not submit the sweep to Slurm: `sbatch` failed with exit status 1" in error
    assert DOWN in error and "No job was started" in error
    assert not (tmp_path / "sweep" / "0").exists()  # no job directory


def test_no_slurm_commands_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_bin(tmp_path)))  # neither srun nor sbatch
    out = run_cli([*SWEEP, f"cache_dir={tmp_path / 'cache'}"], tmp_path / "sweep", monkeypatch)
    assert out.rc == NO_SLURM_EXIT, out.text[-3000:]
    assert "Traceback" not in out.text, out.text[-3000:]
    assert "there is no `srun` command on this machine's PATH" in out.err


def _die_without_a_result() -> None:
    """What an OOM kill or `scancel` leaves: the job's process ends and writes no result."""
    os._exit(9)


@pytest.mark.slow
def test_a_job_that_ends_without_a_result_is_named_with_what_to_do(tmp_path, capsys):
    """A real submitit job whose process dies: gathering its result raises submitit's
    UncompletedJobError, which the launcher turns into one paragraph and exit status 3. (It
    was a job cancelled while it slept; on a loaded machine the SIGINT could land before the
    job ran, so the job finished normally after its whole sleep and the test failed.)"""
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(_die_without_a_result)
    with pytest.raises(SystemExit) as exit_:
        launch_or_explain(lambda: [job.results()[0]], [["shots=1"]], 0, str(tmp_path))
    assert exit_.value.code == UNCOMPLETED_EXIT
    err = capsys.readouterr().err
    assert err.startswith(f"[ERROR] Slurm job {job.job_id} ended without a result: ")
    assert "re-run the same command" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_array_task_names_the_sweep_job(tmp_path, capsys):
    """submitit names an array task `<array id>_<task>`; the task is the job's place in the
    sweep, so the paragraph names its overrides too."""
    from submitit.core.utils import UncompletedJobError

    text = (  # submitit's own wording (core.py, Job.exception) for a cancelled array task
        f"Job 4242_1 (task: 0) with path {tmp_path}/4242_1_0_result.pkl\n"
        "has not produced any output (state: CANCELLED by 0)\nNo output/error stream produced !"
    )

    def launch():
        raise UncompletedJobError(text)

    with pytest.raises(SystemExit) as exit_:
        launch_or_explain(launch, [["shots=1"], ["shots=2"]], 0, "sweep")
    assert exit_.value.code == UNCOMPLETED_EXIT
    err = capsys.readouterr().err
    assert "Slurm job 4242_1 (sweep job #1: shots=2) ended without a result: CANCELLED by 0" in err
