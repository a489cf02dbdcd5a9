"""Outputs and cache entries other people can read: files and directories get the mode the
umask gives (0644 / 0755 under umask 022), as `open` and `mkdir` would, never mkstemp's 0600,
and another user can load a finished entry of a shared KDRUN_CACHE_DIR."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from kdrun.store.cache import (
    ArtifactCache,
    atomic_torch_save,
    atomic_write_text,
    digest,
    record_path,
)
from kdrun.store.storage import make_dirs


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077], ids=oct)
def test_written_files_and_new_dirs_get_the_umasks_mode(tmp_path, mask):
    with umask(mask):
        atomic_write_text("{}\n", tmp_path / "run" / "metrics.json")
        atomic_torch_save({"w": torch.ones(2)}, tmp_path / "run" / "student.pt")
        make_dirs(tmp_path / "run" / "sub")
    assert mode(tmp_path / "run" / "metrics.json") == 0o666 & ~mask
    assert mode(tmp_path / "run" / "student.pt") == 0o666 & ~mask
    assert mode(tmp_path / "run") == 0o777 & ~mask
    assert mode(tmp_path / "run" / "sub") == 0o777 & ~mask
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "metrics.json",
        "student.pt",
        "sub",
    ]  # no temporary left beside them


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=oct)
def test_cache_entries_get_the_umasks_mode(tmp_path, mask):
    cache = ArtifactCache(tmp_path / "cache")
    key = digest({"x": "shared"})
    with umask(mask):
        cache.get_or_build("teacher", key, lambda: {"w": torch.arange(3)})
    path = cache.path("teacher", key)
    assert mode(path) == 0o666 & ~mask
    assert mode(record_path(path)) == 0o666 & ~mask
    assert mode(path.parent) == 0o777 & ~mask
    assert mode(tmp_path / "cache") == 0o777 & ~mask


READER = """
import sys
from pathlib import Path
from kdrun.store.cache import ArtifactCache
print("IMPORTED", flush=True)
entry = ArtifactCache(Path(sys.argv[1])).load("teacher", sys.argv[2])
assert entry is not None, "the entry was not loaded"
print("LOADED", entry["w"].tolist(), flush=True)
"""


def _as_nobody(cache_umask: int, reader: str) -> tuple[subprocess.CompletedProcess, Path, str]:
    """Cache an entry as root under `cache_umask`, then run `reader` as user nobody on it."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to read the entry as user nobody")
    # pytest's tmp_path lies under a 0700 directory: nobody could not even reach it.
    shared = Path(tempfile.mkdtemp(prefix="kdrun-shared-cache-", dir="/tmp"))
    shared.chmod(0o755)  # mkdtemp's own mode; what is inside is kdrun's doing
    key = digest({"x": "another user"})
    with umask(cache_umask):
        ArtifactCache(shared / "cache").get_or_build(
            "teacher", key, lambda: {"w": torch.tensor([1, 2])}
        )
    proc = subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
        + ["-c", reader, str(shared / "cache"), key],
        cwd="/",
        env={**os.environ, "HOME": str(shared)},
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a speed check
    )
    if "IMPORTED" not in proc.stdout:
        shutil.rmtree(shared, ignore_errors=True)
        pytest.skip(f"user nobody cannot run this Python and kdrun: {proc.stderr[-500:]}")
    return proc, shared, key


def test_another_user_loads_a_finished_cache_entry():
    """The README's shared KDRUN_CACHE_DIR: a job of user B reuses what user A's run cached."""
    proc, shared, _ = _as_nobody(0o022, READER)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "LOADED [1, 2]" in proc.stdout
    finally:
        shutil.rmtree(shared, ignore_errors=True)


REFUSED = """
import sys
from pathlib import Path
from kdrun.store.cache import ArtifactCache
from kdrun.errors import StorageError
print("IMPORTED", flush=True)
try:
    ArtifactCache(Path(sys.argv[1])).load("teacher", sys.argv[2])
except StorageError as exc:
    print("REFUSED", exc, flush=True)
"""


def test_an_entry_another_user_cannot_read_is_refused_not_moved_aside():
    """Under umask 077 a second user cannot read the entry: that is not corruption, so the
    entry stays where it is and the error names the path and the way to share a cache."""
    proc, shared, key = _as_nobody(0o077, REFUSED)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "REFUSED cannot read the cache entry" in proc.stdout, proc.stdout
        assert "permission denied" in proc.stdout
        entry = ArtifactCache(shared / "cache").path("teacher", key)
        assert entry.exists() and not list(entry.parent.glob("*.corrupt"))
    finally:
        shutil.rmtree(shared, ignore_errors=True)
