"""A multirun's jobs and its summary, which covers exactly that multirun's jobs
(kdrun.cli.callbacks.SweepSummary, PreflightSweep).

At the start the summary callback writes a manifest (an id, and the jobs' overrides where the
basic sweeper says them up front) to the sweep dir; each job stamps its record with that id
(kdrun.store.record). At the end it reads the jobs' records from disk rather than in-process return
values, so it works the same with the basic, joblib and submitit launchers, and after a re-run
that reused jobs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from omegaconf import DictConfig

from kdrun.report.runs_summary import RunRow, ranked, row_from_record
from kdrun.store.record import IGNORED_OVERRIDES, MANIFEST, RECORD, verify_record
from kdrun.store.storage import atomic_write

log = logging.getLogger("kdrun")
HINT = "hydra.sweep.dir"

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch, in launch order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, when the sweeper fixes them up front (the basic sweeper)."""

    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    try:
        jobs = job_overrides(config)
    except Exception:  # Hydra reports a bad sweep itself, right after the callbacks
        return None
    return [[o for o in job if not o.startswith(IGNORED_OVERRIDES)] for job in jobs]


def write_manifest(sweep_dir: Path, jobs: list[list[str]] | None) -> dict:
    """A fresh id for this multirun; jobs stamp their records with it (see record.py)."""
    manifest = {"id": uuid.uuid4().hex, "started": time.time(), "jobs": jobs}
    atomic_write(sweep_dir / MANIFEST, lambda f: f.write(json.dumps(manifest).encode()), HINT)
    return manifest


NOT_FINISHED = "not finished"  # a job without a record while its sweep still runs


def multirun_rows(sweep_dir: Path, manifest: dict, absent: str = "missing") -> list[RunRow]:
    """One row per job of this multirun: its record's, or failed (a record that does not
    verify) or `absent` (none: "missing" once the sweep has ended, NOT_FINISHED while it runs);
    records of earlier multiruns in the dir are left out."""
    mine: dict[int, RunRow] = {}
    damaged: dict[str, str] = {}
    ignored = 0
    for path in sorted(sweep_dir.rglob(RECORD)):
        check = verify_record(path.parent)
        stamp = (check.record or {}).get("multirun") if check.state == "ok" else None
        if stamp and stamp.get("id") == manifest["id"]:
            mine[int(stamp["job"])] = row_from_record(path.parent, check.record)
        elif check.state == "damaged" and path.parent.parent == sweep_dir:
            damaged[path.parent.name] = check.problem
        else:
            ignored += 1
    planned = manifest.get("jobs")
    count = len(planned) if planned is not None else max(mine, default=-1) + 1
    rows = []
    for num in range(count):
        overrides = " ".join(planned[num]) if planned is not None else ""
        if num in mine:
            rows.append(mine[num])
        elif str(num) in damaged:
            log.warning("sweep summary: job %d: %s: %s", num, RECORD, damaged.pop(str(num)))
            rows.append(RunRow(str(sweep_dir / str(num)), overrides, "failed"))
        else:
            rows.append(RunRow(str(sweep_dir / str(num)), overrides, absent))
    ignored += len(damaged)
    if ignored and absent == "missing":  # said once, by the final summary
        log.info(
            "sweep summary: ignored %d metrics.json of other runs under %s", ignored, sweep_dir
        )
    return ranked(rows)


SUMMARY_LOCK = ".summary.lock"


def write_progress_summary(sweep_dir: Path) -> list[Path]:
    """The summary as it stands: finished jobs with their numbers, the others NOT_FINISHED.
    Written as each job ends, so a killed sweep leaves a summary of what it finished. Jobs
    of a parallel launcher end in their own processes: a lock file in the sweep dir lets one
    write at a time (each file is replaced atomically either way)."""
    import fcntl

    from kdrun.report.runs_summary import write_summary
    from kdrun.store.record import read_manifest

    with open(sweep_dir / SUMMARY_LOCK, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        manifest = read_manifest(sweep_dir)
        if manifest is None:
            return []
        rows = multirun_rows(sweep_dir, manifest, absent=NOT_FINISHED)
        return write_summary(rows, sweep_dir) if rows else []
