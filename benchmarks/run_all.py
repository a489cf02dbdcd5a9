"""`make bench`: every benchmark in one process-per-script pass, each printing its ratio."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPTS = ("overhead", "distill_cost", "curve_cost", "sweep_cost", "startup")


def main() -> int:
    start, failed = time.perf_counter(), []
    for name in SCRIPTS:
        print(f"== benchmarks/{name}.py", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"]).returncode:
            failed.append(name)
    print(f"== all benchmarks in {time.perf_counter() - start:.0f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
