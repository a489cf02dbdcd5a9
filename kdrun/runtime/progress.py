"""Progress for each stage and each long wait: rich bars with the time left on a terminal, plain
log lines everywhere else (at least one every HEARTBEAT_SECONDS, which a Slurm log needs)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kdrun.runtime.interrupt import check_parent

log = logging.getLogger("kdrun")

console = Console(stderr=True)

HEARTBEAT_SECONDS = 30.0  # the longest a long stage or wait stays silent in a log
REFRESH_SECONDS = 0.5  # how often a bar reads the running loss and accuracy (one device sync)
STAGE_LINES = 10  # a training stage logs a line at every tenth of its steps

Clock = Callable[[], float]


def interactive() -> bool:
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    """'45s', '6m 05s', '1h 02m': what a reader of a log line takes in at once."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


@dataclass(frozen=True)
class Running:
    """A stage's sums since it started, on the host: the figures shown are over the steps
    between two readings, so they move with training from the first steps."""

    loss_sum: float = 0.0
    images: int = 0
    correct: int = 0
    labelled: int = 0

    def __add__(self, other: Running) -> Running:
        return Running(
            self.loss_sum + other.loss_sum,
            self.images + other.images,
            self.correct + other.correct,
            self.labelled + other.labelled,
        )

    def since(self, earlier: Running) -> str:
        """'loss 0.412 train acc 0.871' over the images seen after `earlier`."""
        images = self.images - earlier.images
        if images <= 0:
            return ""
        text = f"loss {(self.loss_sum - earlier.loss_sum) / images:.3f}"
        labelled = self.labelled - earlier.labelled
        if labelled > 0:  # a batch of pool images only has no accuracy
            text += f" train acc {(self.correct - earlier.correct) / labelled:.3f}"
        return text


class Meter:
    """Counts the units of one task. A bar (when given) is refreshed at most every
    REFRESH_SECONDS; a log line is written at every 1/`lines` of the total (stages; 0 for
    waits, whose callers log the result) and whenever HEARTBEAT_SECONDS passed without one."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        *,
        bar: Progress | None = None,
        lines: int = 0,
        done: int = 0,
        clock: Clock = time.monotonic,
    ):
        self.label, self.total, self.unit, self.lines = label, max(1, total), unit, lines
        self.done = self._first = done
        self.clock = clock
        self.started = self._last_line = self._last_refresh = clock()
        self._next_mark = self._mark_after(done)
        self._running: Callable[[], Running] | None = None
        self._line_seen = self._bar_seen = Running()
        self.bar = bar
        self.task = bar.add_task(label, total=self.total, completed=done, info="") if bar else None

    def watch(self, running: Callable[[], Running]) -> None:
        """Read the stage's running sums (this may sync a device) only when a figure is shown."""
        self._running = running

    def _mark_after(self, done: int) -> int:
        if not self.lines:
            return self.total + 1
        k = done * self.lines // self.total + 1  # the next tenth (for 10 lines) not yet passed
        return min(self.total, -(-k * self.total // self.lines))

    def advance(self, n: int = 1) -> None:
        check_parent()  # a parallel sweep's worker stops when its launcher died
        self.done += n
        now = self.clock()
        final = self.done >= self.total
        line = (self.lines and (final or self.done >= self._next_mark)) or (
            now - self._last_line >= HEARTBEAT_SECONDS and not final
        )
        refresh = self.bar is not None and (final or now - self._last_refresh >= REFRESH_SECONDS)
        if not (line or refresh):
            return
        running = self._running() if self._running is not None else None
        if refresh:
            info = running.since(self._bar_seen) if running is not None else ""
            self.bar.update(self.task, completed=self.done, info=info)
            self._bar_seen, self._last_refresh = running or self._bar_seen, now
        if line:
            figures = running.since(self._line_seen) if running is not None else ""
            log.info("%s", self.line(now, figures))
            self._line_seen, self._last_line = running or self._line_seen, now
            self._next_mark = self._mark_after(self.done)

    def line(self, now: float, figures: str = "") -> str:
        """'student step 1,600/6,313 (25%): loss 0.410 train acc 0.870 · 2m 10s, ~6m 31s left'."""
        unit = f"{self.unit} " if self.lines else ""
        count = f"{unit}{self.done:,}/{self.total:,}"
        count += "" if self.lines else f" {self.unit}s"
        text = f"{self.label} {count} ({100 * self.done // self.total}%)"
        text += f": {figures}" if figures else ""
        elapsed = now - self.started
        text += f" · {duration(elapsed)}"
        rate = (self.done - self._first) / elapsed if elapsed > 0 else 0.0
        if self.done < self.total and rate > 0:
            text += f", ~{duration((self.total - self.done) / rate)} left"
        return text


def _bar() -> Progress:
    columns = (
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    return Progress(*columns, console=console, transient=False)


@contextmanager
def progress(
    label: str,
    total: int,
    unit: str,
    *,
    lines: int = 0,
    done: int = 0,
    clock: Clock = time.monotonic,
) -> Iterator[Meter]:
    """A bar on a terminal, plain lines off it; `lines` > 0 for a stage that reports figures."""
    if not interactive():
        yield Meter(label, total, unit, lines=lines, done=done, clock=clock)
        return
    with _bar() as bar:
        yield Meter(label, total, unit, bar=bar, lines=lines, done=done, clock=clock)


def stage_progress(stage: str, total_steps: int, done: int = 0) -> Iterator[Meter]:
    """A training stage counted in optimiser steps (the one unit of every stage's lines)."""
    return progress(stage, total_steps, "step", lines=STAGE_LINES, done=done)


def console_handler() -> logging.Handler:
    """Hydra's console log handler: rich on a terminal (sharing the bars' console), plain off it."""
    if interactive():
        from rich.logging import RichHandler

        return RichHandler(console=console, show_path=False, log_time_format="[%X]")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%X"))
    return handler
