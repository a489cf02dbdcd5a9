"""The run (or sweep) directory, before any job starts: check it can be written, so an
unwritable `hydra.run.dir` fails in one paragraph naming the path instead of a traceback, and
claim it, so two live runs never share one directory (kdrun.cli.callbacks.CheckOutputDir)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from kdrun.errors import StorageError
from kdrun.store.storage import DIRS_MADE, ensure_writable_dir, remove_empty_dirs

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".kdrun.lock"  # holds the pid of the run using the directory
# What a run directory holds before the run does any work: Hydra's record of the config, the
# log and the lock. A refused run's directory holding anything else is left alone.
START_FILES = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "kdrun.log"}


def _refuse(message: str) -> None:
    # Logging is not set up yet; SystemExit passes through Hydra's callback and error
    # handlers (they catch Exception), so the user sees this paragraph and nothing else.
    print(f"[ERROR] {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def check_output_dir(path: str, key: str) -> None:
    DIRS_MADE.clear()  # a run (or sweep) starts here: what is made from now on is its own
    try:
        ensure_writable_dir(Path(path).absolute(), key)
    except StorageError as exc:
        remove_empty_dirs(list(DIRS_MADE))  # a refused start leaves no empty run directory
        _refuse(str(exc))


def claim(directory: Path, key: str) -> BinaryIO | None:
    """Hold an exclusive flock on `directory`/LOCK_NAME for the life of this process (the
    kernel drops it when the process dies, however it dies), or refuse in one paragraph
    naming the live holder: a second run would delete the first one's temporary files and
    overwrite its outputs. Returns the open lock file: closing it (or its collection) releases."""
    if fcntl is None:
        return None
    lock = directory / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        _refuse(
            f"another kdrun run (pid {holder}) is using {key}={directory}; give this run its "
            f"own {key} (two runs in one directory overwrite each other's files), or wait for "
            "that run to finish."
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return os.fdopen(fd, "r+b")


def discard_refused_run(out_dir: Path) -> bool:
    """Remove the run directory of a run refused before any work (a bad setting, data that
    cannot be read or downloaded), if this process created it and it holds only START_FILES;
    then every other directory this process created that is left empty (the date directory,
    an empty cache_dir). Returns whether the run directory went."""
    out_dir = out_dir.absolute()
    if out_dir not in DIRS_MADE:
        return False  # a directory the user gave (hydra.run.dir=...) that existed before
    files = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if not p.is_dir()}
    if not files <= START_FILES | {LOCK_NAME}:
        return False
    for name in sorted(files, key=lambda name: name == LOCK_NAME):  # the lock goes last
        (out_dir / name).unlink(missing_ok=True)
    remove_empty_dirs([out_dir / ".hydra", *DIRS_MADE])
    return not out_dir.exists()
