"""Writing to disk safely: atomic files that are whole or absent, and one clear error when a
path cannot be written (disk full, no permission, read-only), never a traceback."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import BinaryIO

from kdrun.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

# For the chaos test only: pause (for KDRUN_PAUSE_SECONDS, default an hour) just before an
# atomic write whose destination path matches this glob (e.g. "*/soft_labels/*.pt") is renamed
# into place, so a SIGKILL lands while that artifact is being written. Unset in normal use.
PAUSE_ENV = "KDRUN_PAUSE_BEFORE_RENAME"

REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file would exceed the largest file this process or file system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a part of the path is a file, not a directory",
    errno.ENAMETOOLONG: "a name in the path is longer than the file system allows",
}
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(path: Path | str, exc: OSError, hint: str = "") -> StorageError:
    """The one-paragraph message for an OSError met while writing `path`."""
    hint = hint or run_dir_key(path)
    reason = REASONS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    where = f"point {hint} at" if hint else "choose"
    fix = (
        f"free some space or {where} another file system"
        if exc.errno in FULL
        else f"{where} a shorter path"
        if exc.errno == errno.ENAMETOOLONG
        else f"{where} a writable directory"
    )
    return StorageError(
        f"cannot write {path}: {reason} ({code}). Nothing partial was left behind; {fix} "
        "and run again: every finished artifact is reused."
    )


def run_dir_key(path: Path | str) -> str:
    """`hydra.run.dir` (or `hydra.sweep.dir` in a multirun) when `path` lies in this job's
    output directory, the setting a user changes to write elsewhere; else ""."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:  # outside a Hydra job (the compose API, tests) there is no output directory
        hydra = HydraConfig.get()
        out = Path(hydra.runtime.output_dir).absolute()
    except Exception:
        return ""
    if not Path(path).absolute().is_relative_to(out):
        return ""
    return "hydra.sweep.dir" if hydra.mode == RunMode.MULTIRUN else "hydra.run.dir"


# Directories this process created (make_dirs), in order: a run refused before any work
# removes those it left empty (kdrun.store.output_dir.discard_refused_run), and nothing else.
DIRS_MADE: list[Path] = []


def missing_dirs(path: Path) -> list[Path]:
    """`path` and those of its ancestors that do not exist yet, outermost first."""
    missing = []
    path = Path(path).absolute()
    while not os.path.exists(path) and path != path.parent:  # False on ENAMETOOLONG too
        missing.append(path)
        path = path.parent
    return missing[::-1]


def remove_empty_dirs(dirs: list[Path]) -> None:
    """rmdir each of `dirs` that is empty, innermost first; never deletes a file."""
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:  # not empty (or gone): it holds something, so it stays
            continue


def make_dirs(path: Path, hint: str = "") -> None:
    """mkdir -p, turning a failure into a StorageError naming the directory."""
    missing = missing_dirs(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(path, exc, hint) from exc
    DIRS_MADE.extend(d for d in missing if d.is_dir())


class _Guarded:
    """A file that remembers the OSError of a failed write: torch.save turns a full disk into
    an opaque RuntimeError ("unexpected pos"), and the path must still be named."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


@contextmanager
def staged_file(path: Path, hint: str = "") -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file beside `path` (`.<name>.<random>.tmp`), flushed and fsynced on exit;
    on any failure it is removed, and a write error becomes a StorageError naming `path`.
    The caller renames it into place (see `atomic_write`); `hint` names the setting to change."""
    make_dirs(path.parent, hint)
    try:
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise storage_error(path, exc, hint) from exc
    guarded = None
    try:
        with os.fdopen(fd, "wb") as f:
            guarded = _Guarded(f)
            yield guarded, tmp  # type: ignore[misc]
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, exc, hint) from exc
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if guarded is not None and guarded.error is not None:
            raise storage_error(path, guarded.error, hint) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


TEMP_NAME_TRIES = 100


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file `.<name>.<random>.tmp` beside `path`, created like mkstemp (O_EXCL) but with
    mode 0666 minus the umask (0644 under 022), as `open` would: mkstemp's 0600 survives the
    rename and would hide outputs and a shared cache from every other user."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(TEMP_NAME_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path.parent))


def commit(tmp: Path, path: Path, hint: str = "") -> None:
    """Rename a finished temporary file into place: readers see the old state or the new one."""
    _pause_if_asked(path)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, exc, hint) from exc


def atomic_write(path: Path, write: Callable[[BinaryIO], object], hint: str = "") -> None:
    """Call `write` on a temporary file, then rename it to `path`: readers see the whole file
    or none, even if this process is killed half-way or the disk fills up."""
    with staged_file(path, hint) as (f, tmp):
        write(f)
    commit(tmp, path, hint)


def remove_stale_temps(path: Path, pattern: str | None = None) -> int:
    """Delete temporary files a killed writer of `path` (or of any file in directory `path`
    with pattern ".*.tmp") left behind. Call only while no live process can be writing there
    (holding the entry's lock, or owning the run directory)."""
    removed = 0
    temps = path.glob(pattern) if pattern else path.parent.glob(f".{path.name}.*.tmp")
    for tmp in temps:
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


PROBE_BYTES = 64 * 1024  # about what Hydra writes into a run directory before the job starts


def ensure_writable_dir(path: Path, key: str) -> None:
    """Create directory `path` and prove PROBE_BYTES can be written in it (a full disk fails
    here, not in Hydra's own writes), or raise StorageError naming `key`, the setting."""
    make_dirs(path, key)
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".kdrun-probe.") as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
    except OSError as exc:
        raise storage_error(path, exc, key) from exc


def _pause_if_asked(path: Path) -> None:
    pattern = os.environ.get(PAUSE_ENV)
    if pattern and fnmatch(str(path), pattern):
        seconds = float(os.environ.get("KDRUN_PAUSE_SECONDS", "3600"))
        log.warning("%s: pausing %.0fs before renaming %s into place", PAUSE_ENV, seconds, path)
        time.sleep(seconds)


MiB = 1 << 20
GiB = 1 << 30


def regular_file(path: Path | str, key: str, max_bytes: int) -> os.stat_result:
    """Check, before opening it, that `path` is a regular file of at most `max_bytes`: a FIFO
    would block forever, /dev/zero or a huge file would fill memory. Raises ConfigError naming
    `key` (the setting or role of the file); returns its stat for digests keyed on it.
    PermissionError passes through (a cache entry of another user is not corrupt)."""
    try:
        st = os.stat(path)
    except PermissionError:
        raise  # not ours to judge: the caller says whose file it is
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{key}={path} cannot be read: {reason}.") from None
    kind = _file_kind(st.st_mode)
    if kind != "regular file":
        raise ConfigError(
            f"{key}={path} is a {kind}, not a regular file; kdrun reads only regular files "
            "(a pipe or device never ends). Point it at a file."
        )
    if st.st_size > max_bytes:
        raise ConfigError(
            f"{key}={path} is {st.st_size / MiB:,.0f} MiB, more than the {max_bytes / MiB:,.0f} "
            "MiB such a file can plausibly be; it is not the file kdrun expects there."
        )
    return st


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")
