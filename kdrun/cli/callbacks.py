"""kdrun's three Hydra callbacks (conf/config.yaml: hydra.callbacks): claim the output
directory, check every job of a sweep before the first starts, summarise a multirun."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console

from kdrun.errors import ConfigError
from kdrun.report.runs_summary import to_rich, write_summary
from kdrun.report.sweep import (
    BASIC_SWEEPER,
    job_overrides,
    log,
    multirun_rows,
    planned_jobs,
    write_manifest,
    write_progress_summary,
)
from kdrun.store.output_dir import LOCK_NAME, check_output_dir, claim
from kdrun.store.record import MANIFEST, read_manifest


class CheckOutputDir(Callback):
    def __init__(self) -> None:
        self._held: BinaryIO | None = None
        self._job: BinaryIO | None = None

    def __getstate__(self) -> dict:
        """Parallel launchers (joblib) pickle the callbacks into their workers: the lock stays
        with the process that took it."""
        return {**self.__dict__, "_held": None, "_job": None}

    def _claim(self, path: str, key: str) -> None:
        check_output_dir(path, key)
        self._release()
        try:
            self._held = claim(Path(path).absolute(), key)
        except OSError as exc:  # flock unsupported here (some network file systems)
            print(f"[WARNING] {key}={path}: cannot lock {LOCK_NAME} ({exc})", file=sys.stderr)

    def _release(self) -> None:
        if self._held is not None:
            self._held.close()  # closing the file releases the flock
            self._held = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.run.dir, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep job's directory is locked by the process that runs the job (a joblib or
        Slurm worker), so a re-run cannot start the same job while a worker still runs it."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return  # a single run's directory is claimed in on_run_start
        self._job = None
        try:
            self._job = claim(
                Path(HydraConfig.get().runtime.output_dir).absolute(), "hydra.sweep.dir"
            )
        except OSError as exc:
            print(f"[WARNING] cannot lock the job directory ({exc})", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        job = getattr(self, "_job", None)
        if job is not None:
            job.close()
            self._job = None


class PreflightSweep(Callback):
    """Without it `kdrun -m shots=5,0` trains the whole shots=5 job and only then refuses
    shots=0: a bad value anywhere in a sweep must cost nothing, like one in a single run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Compose each job's config and run the single-run preflight on it; other sweepers
        (optuna, ax, ...) choose values as they go and are left to check each job."""
        from hydra import compose

        from kdrun.preflight import preflight

        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            _check_search(config)
            return
        jobs = job_overrides(config)
        warn_duplicates(jobs)
        for i, overrides in enumerate(jobs):
            try:
                cfg = compose(config_name="config", overrides=overrides)
            except Exception:  # Hydra's own check of every job reports these, right after us
                return
            try:
                preflight(cfg)
            except ConfigError as exc:
                # stderr, like a single run's error: Hydra's own logger prints to stdout here
                job = " ".join(overrides)
                print(
                    f"[ERROR] sweep job #{i} of {len(jobs)} ({job}): {exc} No job was started.",
                    file=sys.stderr,
                )
                sys.exit(2)


def warn_duplicates(jobs: list[list[str]]) -> None:
    """One line when a sweep repeats a job (`shots=1,1`): the same config would run twice, in
    two directories, and the summary would count it twice."""
    seen: dict[tuple[str, ...], int] = {}
    repeats = []
    for i, overrides in enumerate(jobs):
        key = tuple(sorted(overrides))
        if key in seen:
            repeats.append(f"#{i} repeats #{seen[key]} ({' '.join(overrides) or 'defaults'})")
        else:
            seen[key] = i
    if repeats:
        print(
            f"[WARNING] this sweep lists the same job more than once: {'; '.join(repeats)}; "
            "each runs again in its own directory. Drop the repeated values to run it once.",
            file=sys.stderr,
        )


def _check_search(config: DictConfig) -> None:
    """A sweeper that optimises the task's return value (Optuna) is a search: refuse, before
    any trial, one whose objective could only read the test split, and run the preflight on
    its fixed settings (the sampled ones are checked by each trial's own preflight)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from kdrun.errors import ConfigError
    from kdrun.preflight import check_search, preflight

    searched = [str(k) for k in (config.hydra.sweeper.get("params") or {})]
    try:  # a search range on the command line (student.lr='tag(log, interval(...))') is searched
        parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        searched += [o.key_or_group for o in parsed if o.is_sweep_override()]
        fixed = [o.input_line for o in parsed if o.key_or_group not in searched]
        cfg = compose(config_name="config", overrides=fixed)
    except Exception:  # Hydra reports a bad override itself, right after us
        return
    try:
        check_search(cfg, searched)
        preflight(cfg)
    except ConfigError as exc:
        print(f"[ERROR] search: {exc} No trial was started.", file=sys.stderr)
        sys.exit(2)


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        write_manifest(sweep_dir, planned_jobs(config))
        write_progress_summary(sweep_dir)  # every job "not finished": no earlier sweep's rows

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """Rewrite the summary as each job ends (in the process that ran the job: the
        launcher's for the basic launcher, a worker's for joblib and Slurm), so a sweep killed
        midway leaves one that lists what finished and marks the rest "not finished"."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        try:
            write_progress_summary(Path(config.hydra.sweep.dir))
        except (OSError, ConfigError) as exc:  # the job's own result is already written
            log.warning("sweep summary not updated after this job: %s", exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        manifest = read_manifest(sweep_dir)
        if manifest is None:
            log.warning("sweep summary: no readable %s in %s", MANIFEST, sweep_dir)
            return
        rows = multirun_rows(sweep_dir, manifest)
        if not rows:
            log.warning("sweep summary: no job of this multirun under %s", sweep_dir)
            return
        paths = write_summary(rows, sweep_dir)
        from kdrun.loggers import log_sweep_summary  # logger=...: the sweep's own group

        log_sweep_summary(config, sweep_dir, paths)
        Console(width=140).print(to_rich(rows, f"kdrun sweep · {len(rows)} runs · {sweep_dir}"))
        print("sweep summary: " + ", ".join(str(p) for p in paths), flush=True)
