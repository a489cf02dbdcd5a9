"""A sweep of M student configurations against one teacher plus M students, measured apart.

"Teacher" is everything a first run does besides its student (data, teacher, soft labels,
baseline); "a student" is a whole run whose teacher is already cached. A sweep that retrained
or relabelled per job would cost about M teachers. Target: sweep ≤ 1.1 × (teacher + M students),
judged by the 95% interval over interleaved rounds, each on fresh caches. Both sides are timed
the same way, wall clock around compose + run, so per-run work outside `timing["total"]`
(composing, the record's checksums) counts on both. Uses the synthetic set."""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from benchmarks.common import Measured, Target, compare
from kdrun.config import register_configs
from kdrun.pipeline import run

M_ALPHAS = ("0.5", "0.9")
BASE = [  # the smoke setting, shrunk: the ratio is about sharing, not about the work's size
    "experiment=smoke",
    "device.threads=0",
    "data.train_per_class=40",
    "data.test_per_class=10",
    "pool=20",
    "soft_labels.views=1",
    "teacher.epochs=1",
    "student.steps=10",
    "student.batch_size=25",
]


def main() -> None:
    logging.getLogger("kdrun").setLevel(logging.ERROR)  # the shrunk runs are unconverged
    register_configs()
    fresh = itertools.count()
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_module("kdrun.conf", version_base="1.3"),
    ):
        tmp = Path(tmp)

        def runs(cache: str, alpha: str) -> dict:
            over = [*BASE, f"cache_dir={tmp}/{cache}", f"loss.alpha={alpha}"]
            return run(compose("config", over), tmp / f"out{next(fresh)}")

        def apart() -> Measured:
            """The teacher stage once, then each student as a whole run with it cached."""
            cache = f"apart{next(fresh)}"
            start = time.perf_counter()
            first = runs(cache, M_ALPHAS[0])
            teacher = time.perf_counter() - start - first["timing"]["student"]
            start = time.perf_counter()
            for alpha in M_ALPHAS:
                runs(cache, alpha)
            return Measured(teacher + time.perf_counter() - start)

        def sweep() -> None:
            """A fresh cache, M runs back to back as `kdrun -m loss.alpha=...` does."""
            cache = f"sweep{next(fresh)}"
            for alpha in M_ALPHAS:
                runs(cache, alpha)

        compare(
            f"sweep of {len(M_ALPHAS)} students vs teacher + students",
            sweep,
            apart,
            Target("<=", 1.1),
            ratio=lambda t_sweep, t_apart: t_sweep / t_apart,
            labels=("sweep", "teacher + students apart"),
        )


if __name__ == "__main__":
    main()
