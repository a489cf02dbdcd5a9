"""kdrun's own source as an input of a finished run: a record written by other code (a fix to
the training loop between two commits, with the same version string) is redone, not reused."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from kdrun.store.cache import digest, file_digest

PACKAGE = Path(__file__).resolve().parents[1]


def source_digest(root: Path = PACKAGE) -> str:
    """SHA-256 over every `.py` file under `root`, by relative path and bytes; a few ms."""
    return digest({p.relative_to(root).as_posix(): file_digest(p) for p in root.rglob("*.py")})


@cache
def running_source_digest() -> str:
    """The digest computed once per process, at its first call: `pipeline.run` makes that call
    before any work, so a file edited during a long run does not change what the run records."""
    return source_digest()
