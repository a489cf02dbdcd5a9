"""What every experiment tracker implements: a run that takes params, scalars at steps, final
metrics and files. kdrun/loggers/tracker.py decides what a kdrun run sends through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

Param = str | int | float | bool


@dataclass(frozen=True)
class RunPlace:
    """Where a run sits: its own dir, and for a multirun job the sweep dir and job number, so a
    backend can group a sweep's jobs (one experiment, one log directory)."""

    out_dir: Path
    name: str  # the job's overrides, or the run dir's name when it has none
    sweep_dir: Path | None = None
    job: int | None = None


class RunLogger(ABC):
    """One tracked run. Any method may raise: the tracker warns once and stops calling it."""

    attaches_files = False  # True: `finish` gets the run's files (and a table and plot drawn)

    def __init__(self, cfg: DictConfig, place: RunPlace) -> None:
        self.cfg, self.place = cfg, place  # cfg is the `logger` node

    @abstractmethod
    def start(self, params: dict[str, Param]) -> None:
        """Open the run and record its hyperparameters."""

    @abstractmethod
    def scalars(self, values: dict[str, float], step: int) -> None:
        """Record each named value at `step`."""

    @abstractmethod
    def finish(self, params: dict[str, Param], final: dict[str, float], files: list[Path]) -> None:
        """Record the final metrics (paired with the params) and attach `files`; close the run."""

    @abstractmethod
    def fail(self, killed: bool = False) -> None:
        """Close a run whose kdrun run stopped with an error, or was `killed` by a signal."""

    @classmethod
    @abstractmethod
    def sweep_summary(cls, cfg: DictConfig, sweep_dir: Path, files: list[Path]) -> None:
        """Attach a finished multirun's summary.csv/md/png to the sweep's group."""

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the logs went, for the run's log and the user's next command."""


def flat_params(config: dict, prefix: str = "") -> dict[str, Param]:
    """The resolved config as dotted keys with scalar values (lists and None as text)."""
    out: dict[str, Param] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, str | int | float | bool):
            out[name] = value
        else:
            out[name] = str(value)
    return out
