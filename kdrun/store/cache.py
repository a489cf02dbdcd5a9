"""Content-addressed artifact store: decoded images, teachers, teacher evaluations, soft labels.

Keys are SHA-256 hashes of everything that changes an artifact, so user strings never reach a
path. Each entry is two files in `<cache_dir>/<kind>/`:

- `<key>.pt`: the payload, written by `torch.save` and loaded only with `weights_only=True`;
- `<key>.pt.sum`: a small JSON record of the payload's size and SHA-256.

Both are written to temporary files and renamed into place, the record first and the payload
last, so a payload that is visible always has its record. On read the size and checksum are
verified before unpickling: a truncated, corrupt, foreign or record-less entry (including
format 1, which had no records) is reported in one warning line, moved aside to `.corrupt`
and rebuilt. A builder holds the entry's lock, and removes temporaries a killed builder left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from kdrun.errors import ConfigError, StorageError
from kdrun.measure.finite import nonfinite_count
from kdrun.store.storage import (
    GiB,
    MiB,
    atomic_write,
    commit,
    make_dirs,
    regular_file,
    remove_stale_temps,
    staged_file,
    storage_error,
)

__all__ = [
    "ArtifactCache",
    "CorruptEntry",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_text",
    "digest",
    "file_digest",
    "tensor_digest",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: every payload has a `.sum` record (size + SHA-256), verified on read
LOCK_TIMEOUT_S = 6 * 3600  # longer than any teacher should take; then fail loudly
MAX_ENTRY_BYTES = 256 * GiB  # decoded images of a large set; only a device is bigger
SETTING = "cache_dir (KDRUN_CACHE_DIR)"  # what to change when the cache cannot be written


class CorruptEntry(Exception):
    """A cache file that must not be trusted: truncated, altered, unrecorded or unloadable."""


def digest(parts: Mapping[str, Any]) -> str:
    """Stable hash of a JSON-serialisable description of an artifact."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def tensor_digest(tensor: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and bytes, for identities such as sample indices."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def record_path(path: Path) -> Path:
    """Where the size and checksum of payload `path` are recorded."""
    return path.with_name(path.name + ".sum")


def checksum_record(path: Path) -> dict[str, Any]:
    """The record that vouches for the payload file `path` as it is now."""
    return {"format": FORMAT_VERSION, "size": path.stat().st_size, "sha256": file_digest(path)}


def verify(path: Path) -> None:
    """Raise CorruptEntry unless `path` has a record and matches its size and checksum; neither
    file is opened unless it is a regular file of plausible size (a FIFO would block)."""
    try:
        if not os.path.lexists(record_path(path)):
            raise FileNotFoundError(record_path(path))
        regular_file(record_path(path), "a cache checksum record", MiB)
        regular_file(path, "a cache entry", MAX_ENTRY_BYTES)
        record = json.loads(record_path(path).read_text())
        size, sha = int(record["size"]), str(record["sha256"])
    except FileNotFoundError:
        raise CorruptEntry("no checksum record (older cache format or tampered)") from None
    except PermissionError:
        raise  # another user's entry: not corrupt, and not ours to move aside
    except ConfigError as exc:
        raise CorruptEntry(str(exc)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"unreadable checksum record ({type(exc).__name__})") from None
    actual = path.stat().st_size
    if actual != size:
        raise CorruptEntry(f"truncated or padded: {actual} bytes, {size} recorded")
    if file_digest(path) != sha:
        raise CorruptEntry("SHA-256 does not match the recorded checksum")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def nonfinite_tensor(tree: Any, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in `tree` with a NaN or infinite value."""
    if isinstance(tree, torch.Tensor):
        return (prefix.rstrip(".") or "a tensor") if nonfinite_count(tree) else None
    items = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, list | tuple)
        else ()
    )
    for k, v in items:
        bad = nonfinite_tensor(v, f"{prefix}{k}.")
        if bad is not None:
            return bad
    return None


def unreadable_entry(path: Path, exc: PermissionError) -> StorageError:
    """A finished entry this user may not read (written by another user under a strict umask):
    refused in one paragraph rather than moved aside and rebuilt as if it were corrupt."""
    return StorageError(
        f"cannot read the cache entry {exc.filename or path}: permission denied. Another user "
        "wrote it and it is not readable by you; share the cache as the README's 'Faults and "
        "resumption' section says (a group directory, umask 002), or point cache_dir (or "
        "KDRUN_CACHE_DIR) at a cache of your own."
    )


class ArtifactCache:
    """One directory per artifact kind; one file per key; hits and misses counted per kind."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events: dict[str, dict[str, int]] = {}

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> dict[str, Any] | None:
        """Return the stored entry, or None when absent or untrustworthy (then moved aside)."""
        path = self.path(kind, key)
        try:
            if not path.exists():  # a PermissionError here too: a directory we cannot enter
                return None
            verify(path)
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # e.g. a pickle that would run code: refused, never run
                raise CorruptEntry(f"not a weights-only checkpoint: {_one_line(exc)}") from None
            if not isinstance(entry, dict) or entry.get("_key") != key:
                raise CorruptEntry("entry does not carry its own key")
            bad = nonfinite_tensor(entry)
            if bad is not None:  # e.g. a diverged teacher stored by an older kdrun
                raise CorruptEntry(f"{bad} holds NaN or infinite values")
        except PermissionError as exc:
            raise unreadable_entry(path, exc) from None
        except (CorruptEntry, OSError) as exc:
            self._move_aside(path, exc)
            return None
        return entry

    def _move_aside(self, path: Path, exc: BaseException) -> None:
        aside = path.with_name(path.name + ".corrupt")
        with suppress(FileNotFoundError):  # another reader may have moved it first
            os.replace(path, aside)
        record_path(path).unlink(missing_ok=True)
        log.warning("cache: %s is corrupt (%s); moved aside to %s, rebuilding it", path, exc, aside)

    def save(self, kind: str, key: str, entry: dict[str, Any]) -> Path:
        """Store `entry` under `key`: payload staged, its record written, then the payload
        renamed into place. A failure (disk full, kill) leaves no payload to trust."""
        path = self.path(kind, key)
        bad = nonfinite_tensor(entry)
        if bad is not None:  # callers check first; this guards the cache against any other way
            raise ValueError(f"refusing to cache {kind} {key[:12]}: {bad} is not finite")
        with staged_file(path, SETTING) as (f, tmp):
            torch.save({**entry, "_key": key, "_format": FORMAT_VERSION}, f)
        try:
            record = json.dumps(checksum_record(tmp))
            atomic_write(record_path(path), lambda f: f.write(record.encode()), SETTING)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        commit(tmp, path, SETTING)
        return path

    def discard(self, kind: str, key: str) -> None:
        """Remove an entry that is no longer needed (e.g. a finished teacher's training state)."""
        path = self.path(kind, key)
        path.unlink(missing_ok=True)
        record_path(path).unlink(missing_ok=True)

    def remove_stale_temps(self, kind: str, key: str) -> None:
        """Delete what a killed writer of this entry left; call while holding its lock."""
        removed = remove_stale_temps(self.path(kind, key))
        if removed:
            log.info("cache: removed %d temporary file(s) of a killed %s writer", removed, kind)

    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Serialise builders of one entry across processes (sweep jobs, cluster nodes).

        An OS-level lock (flock) dies with its process, so a killed job never blocks the rest.
        """
        path = self.path(kind, key).with_suffix(".lock")
        make_dirs(path.parent, SETTING)
        lock = FileLock(str(path), timeout=LOCK_TIMEOUT_S)
        try:
            try:
                lock.acquire(timeout=1)
            except Timeout:
                log.info("cache: waiting for another job building %s %s", kind, key[:12])
                lock.acquire()
        except OSError as exc:
            raise storage_error(path, exc, SETTING) from exc
        try:
            yield
        finally:
            lock.release()

    def get_or_build(
        self, kind: str, key: str, build: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """The stored entry, or `build()`'s result stored under `key`; only one process builds."""
        entry = self.load(kind, key)
        hit = entry is not None
        if not hit:
            with self.lock(kind, key):
                entry = self.load(kind, key)  # another job may have built it while we waited
                hit = entry is not None
                if not hit:
                    self.remove_stale_temps(kind, key)
                    entry = build()
                    self.save(kind, key, entry)
        self.record(kind, hit)
        return entry, hit

    def record(self, kind: str, hit: bool) -> None:
        """Note whether a stage reused its artifact, for the log and metrics.json."""
        counts = self.events.setdefault(kind, {"hit": 0, "miss": 0})
        counts["hit" if hit else "miss"] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "dir": str(self.root),
            **{kind: dict(counts) for kind, counts in self.events.items()},
            "hits": sum(c["hit"] for c in self.events.values()),
            "misses": sum(c["miss"] for c in self.events.values()),
        }
