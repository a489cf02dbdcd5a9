"""`make bench`: every benchmark in its own process, each printing its rounds and its
interval-judged verdicts, then the verdicts again in one block. Exit 1 on a MISS or a failed
script; INCONCLUSIVE (the interval straddles the target) does not fail the run."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPTS = (
    "overhead",
    "teacher_throughput",
    "synthesis_throughput",
    "distill_cost",
    "curve_cost",
    "peer_torchdistill",
    "sweep_cost",
    "startup",
)
VERDICTS = ("[OK]", "[MISS]", "[INCONCLUSIVE]", "[SKIP]")


def main() -> int:
    start, failed, verdicts = time.perf_counter(), [], []
    for name in SCRIPTS:
        print(f"== benchmarks/{name}.py", flush=True)
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{name}"], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith(VERDICTS):
                verdicts.append(line.split(" — ")[0].rstrip())
        if proc.wait():
            failed.append(name)
        print(f"   ({time.perf_counter() - began:.0f}s)", flush=True)
    print("== verdicts", flush=True)
    for line in verdicts:
        print(line, flush=True)
    for name in failed:
        print(f"[FAILED] benchmarks/{name}.py exited with an error", flush=True)
    print(f"== all benchmarks in {time.perf_counter() - start:.0f}s", flush=True)
    missed = any(line.startswith("[MISS]") for line in verdicts)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
