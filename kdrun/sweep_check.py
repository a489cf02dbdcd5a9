"""Hydra callback: check every job of a multirun before the first one starts.

Without it `kdrun -m shots=5,0` trains the whole shots=5 job and only then refuses shots=0;
a bad value anywhere in a sweep must cost nothing, like a bad value in a single run.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch, in launch order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class PreflightSweep(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Compose each job's config and run the single-run preflight on it; other sweepers
        (optuna, ax, ...) choose values as they go and are left to check each job."""
        from hydra import compose

        from kdrun.errors import ConfigError
        from kdrun.preflight import preflight

        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return
        jobs = job_overrides(config)
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
