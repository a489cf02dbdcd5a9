"""Start-up and data: `kdrun --help`, first decode of CIFAR-10, warm reload, and the peak memory
of a full real-data run. Targets: warm reload < 1 s, peak memory < 2 GiB. The data figures need
KDRUN_DATA_ROOT (a CIFAR-10 class-folder tree or torchvision copy); without it they are skipped."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import report

KDRUN = str(Path(sys.executable).with_name("kdrun"))
CHILD = (
    "import sys, time, resource\n"
    "from pathlib import Path\n"
    "from omegaconf import OmegaConf\n"
    "from kdrun.store.cache import ArtifactCache\n"
    "from kdrun.data import get_source\n"
    "cfg = OmegaConf.create({'source': 'cifar10', 'root': sys.argv[1], 'download': False,"
    " 'image_size': 32})\n"
    "t = time.perf_counter(); get_source('cifar10').load(cfg, ArtifactCache(Path(sys.argv[2])))\n"
    "print(time.perf_counter() - t)\n"
)


def main() -> None:
    start = time.perf_counter()
    subprocess.run([KDRUN, "--help"], check=True, capture_output=True)
    print(f"[info] kdrun --help: {time.perf_counter() - start:.2f}s wall (no torch import)")
    root = os.environ.get("KDRUN_DATA_ROOT")
    if not root:
        print("[skip] data and memory figures: set KDRUN_DATA_ROOT to a CIFAR-10 copy")
        return
    with tempfile.TemporaryDirectory() as cache:
        load = [sys.executable, "-c", CHILD, root, cache]
        first = float(subprocess.run(load, check=True, capture_output=True, text=True).stdout)
        warm = float(subprocess.run(load, check=True, capture_output=True, text=True).stdout)
        report(
            "warm data reload vs first decode",
            warm / first,
            "warm < 1 s",
            warm < 1.0,
            f"first decode {first:.2f}s, warm reload {warm:.2f}s",
        )
        args = [
            KDRUN,
            f"data.root={root}",
            "data.download=false",
            "teacher.epochs=1",
            "student.steps=100",
            f"hydra.run.dir={cache}/run",
        ]
        env = {**os.environ, "KDRUN_CACHE_DIR": cache}
        subprocess.run(args, check=True, capture_output=True, env=env)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    report(
        "peak memory of a full CIFAR-10 run (1 teacher epoch)",
        peak_gib / 2,
        "< 2 GiB",
        peak_gib < 2,
        f"peak RSS {peak_gib:.2f} GiB",
    )


if __name__ == "__main__":
    main()
