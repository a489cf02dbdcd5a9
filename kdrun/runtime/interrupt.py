"""Ctrl-C, SIGTERM, SIGHUP (a closed terminal or ssh session) and SIGQUIT end a run in one
line, not a page of traceback, logged in kdrun.log: every finished stage is cached, so the
useful news is where it stopped and that the same command resumes. The exit status is 128 +
the signal number: 130 (INT), 143 (TERM), 129 (HUP), 131 (QUIT)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType, TracebackType

log = logging.getLogger("kdrun")


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP, SIGQUIT: `signum`), raised like Ctrl-C so that the same cleanup
    (temporary files, locks) runs."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


class Orphaned(Terminated):
    """A parallel sweep's worker whose launcher died: it stops rather than go on writing in a
    job directory that a re-run of the sweep would start on too."""


_parent: int | None = None  # the launcher this worker must outlive; None: not watched


def watch_parent() -> None:
    """From now on, check_parent stops this process once its parent is gone (re-parented)."""
    global _parent
    _parent = os.getppid()


def check_parent() -> None:
    """Raise Orphaned if the parent watch_parent saw has died; cheap (one getppid call)."""
    if _parent is not None and os.getppid() != _parent:
        raise Orphaned(signal.SIGTERM)


# Signals that end a run like Ctrl-C: `kill`, a scheduler's time limit, a closed terminal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)
_stopping = False  # set once the first signal's exception is raised (or deferred)
_pending: KeyboardInterrupt | None = None  # a signal held while Hydra loaded a config


# Hydra's config loading, which a kdrun process runs before each job it runs itself (a
# launcher that runs jobs elsewhere loads their configs there).
HYDRA_CONFIG_LOADING = (
    "hydra._internal.config_loader_impl",
    "hydra._internal.config_repository",
    "hydra._internal.defaults_list",
    "hydra._internal.core_plugins.importlib_resources_config_source",
    "hydra._internal.core_plugins.file_config_source",
    "hydra._internal.core_plugins.structured_config_source",
)


def in_hydra_config_loading(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside Hydra's config loading (composing or reading a job's
    config), not in kdrun code that Hydra called."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(HYDRA_CONFIG_LOADING):
            return True
        if module.startswith("kdrun."):
            return False
        frame = frame.f_back
    return False


def _stop(exc: KeyboardInterrupt, frame: FrameType | None) -> None:
    """Raise the first signal's exception where it landed, or hold it until raise_pending if
    it landed in Hydra's config loading: Hydra 1.3's config reader closes a file in a `finally`
    before it was opened, so an exception raised there becomes UnboundLocalError, a traceback
    and exit 1. The next job's start or the end of main follows it in the same process."""
    global _stopping, _pending
    if _stopping:
        return  # the first one is already stopping the run
    _stopping = True
    if in_hydra_config_loading(frame):
        _pending = exc
        return
    raise exc


def raise_pending() -> None:
    """Raise a signal held back by _stop; called where kdrun's code takes over from Hydra's
    (each job's start, the end of main)."""
    global _pending
    exc, _pending = _pending, None
    if exc is not None:
        raise exc


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, STOP_SIGNALS raise Terminated and a second signal (a second Ctrl-C)
    is ignored while the first one's message and cleanup run; the previous handlers are
    restored after (kdrun.cli.main.main also runs inside test processes)."""
    global _stopping, _pending
    _stopping, _pending = False, None

    def handler(signum: int, frame: FrameType | None) -> None:
        _stop(Terminated(signum), frame)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        _stop(KeyboardInterrupt(), frame)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        _pending = None
        for sig, old in previous.items():
            signal.signal(sig, old)


# kdrun modules → the stage they run; a frame of `fit` names its own stage ("teacher", ...).
STAGE_MODULES = {
    "kdrun.stages.teacher": "the teacher stage",
    "kdrun.stages.soft_labels": "soft labelling",
    "kdrun.stages.teacher_features": "teacher features",
    "kdrun.stages.student": "student training",
}
EPISODE_LOOP = ("kdrun.pipeline", "_run_episode")  # its local `e` is the episode number


def stage_of(tb: TracebackType | None) -> str | None:
    """The stage the traceback `tb` was in, and its episode, or None outside every stage. The
    most specific frame wins: `fit`, then a stage module, then data loading (which stages also
    call)."""
    found: dict[int, str] = {}  # rank (0: most specific) → the innermost stage of that rank
    episode = None
    while tb is not None:
        frame = tb.tb_frame
        stage = frame.f_locals.get("stage") if frame.f_code.co_name == "fit" else None
        module = frame.f_globals.get("__name__", "")
        if module == EPISODE_LOOP[0] and frame.f_code.co_name == EPISODE_LOOP[1]:
            episode = frame.f_locals.get("e")
        if isinstance(stage, str):
            found[0] = f"{stage} training"
        elif module in STAGE_MODULES:
            found[1] = STAGE_MODULES[module]
        elif module.startswith("kdrun.data"):
            found[2] = "data loading"
        tb = tb.tb_next
    if not found:
        return f"episode {episode}" if isinstance(episode, int) else None
    return found[min(found)] + (f" of episode {episode}" if isinstance(episode, int) else "")


def report_interrupt(exc: KeyboardInterrupt) -> int:
    """Say in one line where the run stopped (also into kdrun.log once logging is set up);
    returns the exit status: 128 + the signal number, as a shell reports it."""
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    stage = stage_of(exc.__traceback__)
    what = {
        signal.SIGINT: "interrupted",
        signal.SIGTERM: "terminated (SIGTERM)",
        getattr(signal, "SIGHUP", -1): "hung up (SIGHUP: the terminal or session closed)",
        getattr(signal, "SIGQUIT", -2): "quit (SIGQUIT)",
    }[signum]
    if isinstance(exc, Orphaned):
        what = f"stopped: the sweep's launcher (pid {_parent}) died"
    where = f" during {stage}" if stage else ""
    message = f"{what}{where}: finished stages are cached; re-run the same command to resume."
    if logging.getLogger().handlers:
        log.warning("%s", message)
    else:
        with suppress(OSError):  # SIGHUP: the terminal may be gone
            print(f"[WARNING] {message}", file=sys.stderr, flush=True)
    return 128 + signum
