"""How much memory this process may still take: the machine's available memory, capped by the
cgroup's limit (a container or a Slurm job) when one is set. Preflight compares a run's
estimate with it before any work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Available:
    """Bytes this process may still allocate, and where the figure comes from."""

    nbytes: int
    source: str


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable (the kernel's estimate of memory usable without swapping), in bytes."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform (macOS)
        return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def cgroup_room(root: Path = CGROUP) -> int | None:
    """What the cgroup v2 limit leaves (memory.max - memory.current); None when unlimited."""
    limit = _read_int(root / "memory.max")
    if limit is None:
        return None
    return max(0, limit - (_read_int(root / "memory.current") or 0))


def available_memory(root: Path = CGROUP, meminfo: Path = Path("/proc/meminfo")) -> Available:
    """The smaller of the machine's available memory and the cgroup's room."""
    machine = _meminfo_available(meminfo)
    source = "MemAvailable"
    if machine is None:
        machine, source = _sysconf_available(), "available physical pages"
    room = cgroup_room(root)
    if room is not None and (machine is None or room < machine):
        return Available(room, f"the cgroup limit {root / 'memory.max'}")
    return Available(machine if machine is not None else 0, source if machine else "unknown")
