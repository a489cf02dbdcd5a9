"""`hydra/launcher=kdrun_slurm`: submitit's Slurm launcher, with its two failures said in one
paragraph instead of a traceback: no Slurm to submit to (exit 2), and a sweep job that ended
without a result, e.g. cancelled or out of time (exit 3)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

NO_SLURM_EXIT = 2
UNCOMPLETED_EXIT = 3
JOB_ID = re.compile(r"Job (\S+) \(task")


def submission_problem(exc: BaseException) -> str | None:
    """Why sbatch could not submit, in words; None when `exc` is not a submission failure."""
    if isinstance(exc, FileNotFoundError) and "sbatch" in str(exc.filename or exc):
        return "there is no `sbatch` command on this machine's PATH"
    if type(exc) is RuntimeError and "slurm cluster" in str(exc):  # submitit looks for srun
        return "there is no `srun` command on this machine's PATH (submitit: " + str(exc) + ")"
    cause = exc.__cause__
    if isinstance(cause, subprocess.CalledProcessError) and "sbatch" in str(cause.cmd[0]):
        said = " ".join(str(cause.stderr or cause.output or "").split())[:300]
        return f"`sbatch` failed with exit status {cause.returncode}" + (
            f" ({said})" if said else ""
        )
    return None


def no_slurm_message(problem: str, sweep_dir: str) -> str:
    return (
        f"hydra/launcher=kdrun_slurm could not submit the sweep to Slurm: {problem}. No job was "
        "started. Run from a Slurm login node (check that `sinfo` answers), or drop "
        f"hydra/launcher=kdrun_slurm to run the jobs here; then re-run the same command "
        f"(hydra.sweep.dir={sweep_dir})."
    )


def uncompleted_message(
    exc: Exception, job_overrides: Sequence[Sequence[str]], first: int, sweep_dir: str
) -> str:
    """Name the Slurm job and the sweep job it ran (`<array id>_<task>`: task = position)."""
    text = " ".join(str(exc).split())
    found = JOB_ID.search(text)
    slurm_id = found[1] if found else "?"
    state = re.search(r"state: ([^)]*)\)", text)
    why = state[1] if state else text[:200]
    which = ""
    task = re.fullmatch(r"\d+_(\d+)", slurm_id)
    if task and int(task[1]) < len(job_overrides):
        i = int(task[1])
        which = f" (sweep job #{first + i}: {' '.join(job_overrides[i]) or 'defaults'})"
    return (
        f"Slurm job {slurm_id}{which} ended without a result: {why}. It was cancelled, "
        "pre-empted, ran out of time or its node failed; the sweep's other jobs run on, each "
        "writing its own metrics.json. Once they have ended (squeue), re-run the same command "
        f"with the same hydra.sweep.dir={sweep_dir}: finished jobs are reused, only this one and "
        "any other unfinished job run again, and the summary then covers them all."
    )


def launch_or_explain(
    launch: Callable[[], Any],
    job_overrides: Sequence[Sequence[str]],
    first: int,
    sweep_dir: str,
) -> Any:
    """Run submitit's launch; turn its two expected failures into one paragraph and an exit
    status (hydra_plugins/kdrun_slurm_launcher calls this)."""
    from submitit.core.utils import UncompletedJobError

    try:
        return launch()
    except (FileNotFoundError, RuntimeError) as exc:  # UncompletedJobError is a RuntimeError
        problem = submission_problem(exc)
        if problem is not None:
            _fail(no_slurm_message(problem, sweep_dir), NO_SLURM_EXIT)
        if isinstance(exc, UncompletedJobError):
            _fail(uncompleted_message(exc, job_overrides, first, sweep_dir), UNCOMPLETED_EXIT)
        raise


def _fail(message: str, code: int) -> None:
    """stderr, as a single run's error; SystemExit passes Hydra's error report untouched."""
    print(f"[ERROR] {message}", file=sys.stderr, flush=True)
    sys.exit(code)
