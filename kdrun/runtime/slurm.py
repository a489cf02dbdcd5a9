"""The Slurm job this process runs in, read from the variables Slurm sets: recorded in
metrics.json so a sweep's records say which job (and array task) produced them, and the CPU
count the job asked for, which sets torch's threads (Slurm does not pin them with task/none)."""

from __future__ import annotations

import os

# metrics.json key -> Slurm's variable; an array job's tasks share the array job id.
FIELDS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "node": "SLURMD_NODENAME",
    "partition": "SLURM_JOB_PARTITION",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
}


def slurm_job() -> dict[str, str] | None:
    """This process's Slurm job (the variables that are set), or None outside Slurm."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {key: os.environ[var] for key, var in FIELDS.items() if var in os.environ}


def slurm_cpus() -> int | None:
    """The CPUs per task the Slurm job asked for (`hydra.launcher.cpus_per_task`), if any."""
    job = slurm_job() or {}
    value = job.get("cpus_per_task", "")
    return int(value) if value.isdigit() and int(value) > 0 else None
