"""Progress for each stage: rich bars on a terminal, a few plain log lines everywhere else."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("kdrun")

console = Console(stderr=True)


def interactive() -> bool:
    return sys.stderr.isatty()


class StageProgress:
    """Counts steps; `epoch_done` reports an epoch's figures (bar text or a throttled log line)."""

    def __init__(self, stage: str, total_steps: int, total_epochs: int, bar: Progress | None):
        self.stage, self.total_epochs, self.bar = stage, total_epochs, bar
        self.task = bar.add_task(stage, total=total_steps, info="") if bar else None
        self.log_every = max(1, total_epochs // 10)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def epoch_done(self, epoch: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, info=info)
        if epoch % self.log_every == 0 or epoch == self.total_epochs:
            log.info("%s epoch %d/%d: %s", self.stage, epoch, self.total_epochs, info)


@contextmanager
def stage_progress(stage: str, total_steps: int, total_epochs: int) -> Iterator[StageProgress]:
    if not interactive():
        yield StageProgress(stage, total_steps, total_epochs, None)
        return
    columns = (
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        yield StageProgress(stage, total_steps, total_epochs, bar)


def console_handler() -> logging.Handler:
    """Hydra's console log handler: rich on a terminal (sharing the bars' console), plain off it."""
    if interactive():
        from rich.logging import RichHandler

        return RichHandler(console=console, show_path=False, log_time_format="[%X]")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%X"))
    return handler
