"""`kdrun`: compose the config with Hydra, check it, run the experiment, print the summary.

Nothing here imports torch at module level: `kdrun --help` composes the config and exits, and
importing torch would be most of its time. The run imports it inside `_main`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from kdrun.cli.config_dir import check_config_dirs
from kdrun.cli.override_keys import check_override_keys
from kdrun.config import config_digest, register_configs
from kdrun.errors import ConfigError, DivergedError, RefusedStart
from kdrun.runtime.interrupt import raise_pending, report_interrupt, sigterm_raises, watch_parent
from kdrun.runtime.slurm import slurm_cpus

log = logging.getLogger("kdrun")

register_configs()


def finished_metrics(out_dir: Path, cfg: DictConfig) -> dict | None:
    """A verified metrics.json written for this exact config and these exact inputs (data,
    teacher checkpoint, kdrun's version and code), e.g. a re-run sweep's done job. Any other
    metrics.json there (damaged, unverified, another config, other inputs) is moved aside."""
    from kdrun.pipeline import input_proof
    from kdrun.store.record import restamp, set_aside, verify_record

    check = verify_record(out_dir)
    if check.state == "absent":
        return None
    if check.record is None or check.state != "ok":
        set_aside(out_dir, f"not a verified record: {check.problem}")
        return None
    if check.record["config_digest"] != config_digest(cfg):
        set_aside(out_dir, "a record of another config (e.g. an earlier sweep in this dir)")
        return None
    try:
        proof = input_proof(cfg)
    except ConfigError:
        return None  # unreadable inputs: the run's preflight says so; the record stays
    changed = _changed_inputs(check.record.get("inputs"), proof)
    if changed:
        set_aside(out_dir, f"a record of other inputs ({changed} changed since it was written)")
        return None
    return restamp(out_dir, check.record, cfg)  # now also a job of this multirun, if one


INPUT_NAMES = {
    "data": "the data",
    "teacher_checkpoint": "the teacher checkpoint",
    "kdrun": "kdrun's version",
    "code": "kdrun's code",
}


def _changed_inputs(recorded: object, proof: dict) -> str:
    """Which inputs differ between a record's proof and this run's, as words; "" if none."""
    if not isinstance(recorded, dict):
        return "no proof of its inputs: written by an older kdrun, so everything"
    return ", ".join(INPUT_NAMES[k] for k in proof if recorded.get(k) != proof[k])


def _record_divergence(out_dir: Path, cfg: DictConfig, exc: DivergedError) -> None:
    """A diverged run is a result: metrics.json says so (status, stage, step), with no numbers."""
    from kdrun.store.record import write_record

    record = {"status": "diverged", "error": str(exc), "stage": exc.stage, "step": exc.step}
    write_record(out_dir, record, cfg)


def _share_cores_with_parallel_jobs(cfg: DictConfig) -> None:
    """Under a local parallel launcher, split the cores between jobs, and in a Slurm job use
    the CPUs it asked for: oversubscribed CPU threads slow every job down many times over."""
    if cfg.device.threads > 0:
        return
    import torch

    slurm = slurm_cpus()
    if slurm:
        torch.set_num_threads(slurm)
        log.info("Slurm job with %d CPU(s) per task: %d thread(s)", slurm, slurm)
        return
    launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if n_jobs:
        cores = os.cpu_count() or 1
        threads = max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
        torch.set_num_threads(threads)
        log.info("%s parallel jobs on %d cores: %d thread(s) per job", n_jobs, cores, threads)


@hydra.main(version_base="1.3", config_path="pkg://kdrun.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from kdrun.pipeline import run
    from kdrun.report.run_table import print_summary

    raise_pending()  # a Ctrl-C while Hydra prepared this job stops the run here
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if "joblib" in str(HydraConfig.get().launcher.get("_target_", "")):
        watch_parent()  # a worker of a parallel sweep: stop if the launcher dies
    metrics = finished_metrics(out_dir, cfg)
    if metrics is not None:
        log.info("%s already holds a finished run of this config: reusing it", out_dir)
    else:
        _share_cores_with_parallel_jobs(cfg)
        try:
            metrics = run(cfg, out_dir)
        except DivergedError as exc:
            log.error("%s", exc)
            _record_divergence(out_dir, cfg, exc)
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                return None  # the sweep goes on; its summary lists this job as diverged
            sys.exit(2)
        except ConfigError as exc:
            log.error("%s", exc)
            if isinstance(exc, RefusedStart) and HydraConfig.get().mode == RunMode.RUN:
                from kdrun.store.output_dir import discard_refused_run

                discard_refused_run(out_dir)  # it holds nothing but the log of this refusal
            sys.exit(2)
    if metrics.get("status", "ok") != "ok":  # a reused record of a diverged run
        log.error("%s: run %s: %s", out_dir, metrics["status"], metrics.get("error", ""))
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None
        sys.exit(2)
    print_summary(metrics)
    return search_objective(metrics)


def search_objective(metrics: dict) -> float | None:
    """What a Hydra sweeper that optimises (hparams_search=...) reads: the student's mean
    val_acc over the run's episodes, never a test number. None without a validation split:
    Optuna then records the trial as failed (PreflightSweep refuses such a search first)."""
    return metrics["student"].get("val_acc")


def register_slurm_launcher() -> None:
    """hydra/launcher=kdrun_slurm's class: Hydra finds plugins by scanning the hydra_plugins
    package, which misses it in an editable install; registering it is Hydra's documented
    alternative. Without `kdrun[slurm]` there is nothing to register."""
    try:
        from hydra_plugins.kdrun_slurm_launcher import KdrunSlurmLauncher
    except ImportError:
        return
    from hydra.core.plugins import Plugins

    Plugins.instance().register(KdrunSlurmLauncher)


def main() -> None:
    register_slurm_launcher()
    logging.raiseExceptions = False  # a full disk must not turn each log line into a traceback
    debugging = os.environ.get("HYDRA_FULL_ERROR") == "1"  # then every traceback, as Hydra's
    if not debugging:
        check_config_dirs(sys.argv[1:])
        check_override_keys(sys.argv[1:])
    code = None
    with sigterm_raises():  # a second signal is ignored until the first one's line is out
        try:
            _main()
            raise_pending()  # one that landed in Hydra after the last job still stops the run
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP/SIGQUIT via sigterm_raises
            if debugging:
                raise
            code = report_interrupt(exc)
    if code is not None:
        sys.exit(code)


if __name__ == "__main__":
    main()
