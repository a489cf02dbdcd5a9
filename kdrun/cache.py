"""Content-addressed artifact store: decoded images, teachers, teacher evaluations, soft labels.

Keys are SHA-256 hashes of everything that changes an artifact, so user strings never reach a
path. Writes go to a temporary file that is renamed into place only when complete, so a killed
run leaves either a whole entry or none; an entry that fails to load is moved aside and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOCK_TIMEOUT_S = 6 * 3600  # longer than any teacher should take; then fail loudly


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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temporary file, then rename it to `path`: readers see the whole file
    or none, even if this process is killed half-way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


class ArtifactCache:
    """One directory per artifact kind; one file per key; hits and misses counted per kind."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events: dict[str, dict[str, int]] = {}

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> dict[str, Any] | None:
        """Return the stored entry, or None when absent or unreadable (then moved aside)."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(entry, dict) or entry.get("_key") != key:
                raise ValueError("entry does not carry its own key")
        except Exception as exc:  # corrupt, truncated or foreign file: never trust it
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            log.warning(
                "cache: %s entry %s unreadable (%s); moved to %s", kind, key[:12], exc, aside
            )
            return None
        return entry

    def save(self, kind: str, key: str, entry: dict[str, Any]) -> Path:
        path = self.path(kind, key)
        atomic_torch_save({**entry, "_key": key, "_format": FORMAT_VERSION}, path)
        return path

    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Serialise builders of one entry across processes (sweep jobs, cluster nodes).

        An OS-level lock (flock) dies with its process, so a killed job never blocks the rest.
        """
        path = self.path(kind, key).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire(timeout=1)
        except Timeout:
            log.info("cache: waiting for another job building %s %s", kind, key[:12])
            lock.acquire()
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
