"""A sweep of M student configurations against one teacher plus M students, measured apart.

"Teacher" is everything a first run does besides its student (data, teacher, soft labels,
baseline); "a student" is a whole run whose teacher is already cached. A sweep that retrained
or relabelled per job would cost about M teachers. Target: sweep ≤ 1.1 × (teacher + M students).
Both sides are timed the same way, wall clock around compose + run, so per-run work outside
`timing["total"]` (composing, the record's checksums) counts on both. Uses the synthetic set."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from benchmarks.common import report
from kdrun.config import register_configs
from kdrun.pipeline import run

M_ALPHAS = ("0.3", "0.5", "0.7", "0.9")
BASE = ["experiment=smoke", "device.threads=0"]


def main() -> None:
    register_configs()
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_module("kdrun.conf", version_base="1.3"),
    ):
        tmp = Path(tmp)
        # Apart: the teacher stage once, then each student as a whole run with the teacher cached.
        start = time.perf_counter()
        first = run(compose("config", [*BASE, f"cache_dir={tmp}/a"]), tmp / "warm")
        teacher = time.perf_counter() - start - first["timing"]["student"]
        start = time.perf_counter()
        for alpha in M_ALPHAS:
            run(
                compose("config", [*BASE, f"cache_dir={tmp}/a", f"loss.alpha={alpha}"]),
                tmp / f"s{alpha}",
            )
        students = time.perf_counter() - start
        # Together: a fresh cache, M runs back to back as `kdrun -m loss.alpha=...` does.
        start = time.perf_counter()
        for alpha in M_ALPHAS:
            run(
                compose("config", [*BASE, f"cache_dir={tmp}/b", f"loss.alpha={alpha}"]),
                tmp / f"t{alpha}",
            )
        sweep = time.perf_counter() - start
    ratio = sweep / (teacher + students)
    report(
        f"sweep of {len(M_ALPHAS)} students vs teacher + students",
        ratio,
        "<= 1.1",
        ratio <= 1.1,
        f"sweep {sweep:.1f}s, teacher {teacher:.1f}s + students {students:.1f}s",
    )


if __name__ == "__main__":
    main()
