"""Hydra callback: before any job starts, check the run (or sweep) directory can be written, so
an unwritable `hydra.run.dir` fails in one paragraph naming the path instead of a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdrun.storage import StorageError, ensure_writable_dir


def _check(path: str, key: str) -> None:
    try:
        ensure_writable_dir(Path(path).absolute(), key)
    except StorageError as exc:
        # Logging is not set up yet; SystemExit passes through Hydra's callback and error
        # handlers (they catch Exception), so the user sees this paragraph and nothing else.
        print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


class CheckOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config.hydra.sweep.dir, "hydra.sweep.dir")
