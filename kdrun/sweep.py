"""Hydra callback: at the end of every multirun, summarise the jobs found on disk.

It reads the jobs' files rather than in-process return values, so it works the same with the
basic, joblib and submitit launchers, and after a re-run that reused finished jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console

from kdrun.summary import collect, to_rich, write_summary

log = logging.getLogger("kdrun")


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect([sweep_dir])
        if not rows:
            log.warning("sweep summary: no finished job under %s", sweep_dir)
            return
        paths = write_summary(rows, sweep_dir)
        Console(width=140).print(to_rich(rows, f"kdrun sweep · {len(rows)} runs · {sweep_dir}"))
        print("sweep summary: " + ", ".join(str(p) for p in paths), flush=True)
