"""Start-up and data: `kdrun --help`, first decode of CIFAR-10, warm reload, and the peak memory
of a full real-data run (its teacher loaded from a checkpoint). The data figures need
KDRUN_DATA_ROOT (a CIFAR-10 class-folder tree or torchvision copy); else they are skipped.

Targets: warm reload <= 20x a plain `torch.load` of the same cached bytes, interleaved in the
same run (an absolute "< 1 s" flipped with the machine: the decoded tensors are already
memory-mapped, and 9/10 of a warm reload is listing and stat'ing the tree's 60,000 files for
the fingerprint that notices an edited image, plus the SHA-256 check of the cache entry);
peak memory < 2 GiB."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.common import Target, compare, info, skip
from kdrun.data import get_source
from kdrun.models import build_model
from kdrun.store.cache import ArtifactCache

WARM_TARGET = 20.0
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
    info("kdrun --help", f"{time.perf_counter() - start:.2f}s wall (no torch import)")
    root = os.environ.get("KDRUN_DATA_ROOT")
    if not root:
        skip("data and memory figures", "set KDRUN_DATA_ROOT to a CIFAR-10 copy")
        return
    with tempfile.TemporaryDirectory() as cache:
        load = [sys.executable, "-c", CHILD, root, cache]
        first = float(subprocess.run(load, check=True, capture_output=True, text=True).stdout)
        info("first decode of the data set (cached after)", f"{first:.1f}s")
        cfg = OmegaConf.create(
            {"source": "cifar10", "root": root, "download": False, "image_size": 32}
        )
        (entry,) = Path(cache, "images").glob("*.pt")

        def warm() -> None:
            get_source("cifar10").load(cfg, ArtifactCache(Path(cache)))

        def plain() -> None:
            torch.load(entry, map_location="cpu", weights_only=True)

        compare(
            "warm data reload vs a plain torch.load of the same bytes",
            warm,
            plain,
            Target("<=", WARM_TARGET),
            ratio=lambda t_warm, t_plain: t_warm / t_plain,
            labels=("kdrun warm reload (scan, fingerprint, verify, mmap)", "torch.load"),
        )
        # A loaded teacher (teacher.checkpoint): a cnn_large epoch on 50,000 images takes
        # minutes on 2 slow cores. The figure covers decoding, the teacher's test, labelling
        # the pool's views, the student and the baseline; teacher training is not in it.
        teacher = Path(cache, "teacher.pt")
        torch.save(build_model("cnn_large", 10).state_dict(), teacher)
        args = [
            KDRUN,
            f"data.root={root}",
            "data.download=false",
            f"teacher.checkpoint={teacher}",
            "student.steps=100",
            f"hydra.run.dir={cache}/run",
        ]
        env = {**os.environ, "KDRUN_CACHE_DIR": cache}
        subprocess.run(args, check=True, capture_output=True, env=env)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    verdict = "OK" if peak_gib < 2 else "MISS"  # one deterministic figure, not a timing
    print(
        f"[{verdict}] peak memory of a full CIFAR-10 run (loaded teacher): {peak_gib:.2f} GiB "
        "(target < 2 GiB)",
        flush=True,
    )


if __name__ == "__main__":
    main()
