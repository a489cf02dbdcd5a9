"""Chaos check: SIGKILL `kdrun` at several points, re-run the same command, and require the
final metrics to equal those of an uninterrupted run, number for number.

    python scripts/chaos.py [--workdir DIR] [--keep]

One command is killed three times in a row and then re-run to the end, all on one cache:
during teacher training (after its first checkpoint), while the soft labels are being written
(paused just before their file is renamed into place, via KDRUN_PAUSE_BEFORE_RENAME), and
during the student. Then a two-job sweep is killed during its second job and re-run. Each kill
is a SIGKILL to the whole process group, triggered by the run's own log lines. Exits non-zero
(with the reason) if any re-run fails or differs; `tests/test_chaos.py` runs it in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kdrun.measure.cost import without_clocks

KDRUN = str(Path(sys.executable).with_name("kdrun"))
# The smoke setting, shrunk so every stage takes about a second on 2 cores.
BASE = [
    "experiment=smoke",
    "data.train_per_class=150",
    "data.test_per_class=20",
    "teacher.epochs=6",
    "student.steps=80",
    "pool=20",
    "device.threads=1",
]
TEACHER_PAST_EPOCH_2 = r"teacher step [\d,]+/[\d,]+ \(([4-9]\d|100)%\)"  # >= 40% of 6 epochs
TIMEOUT_S = 3600  # a hang guard for each kdrun process, not a speed check


def log(message: str) -> None:
    print(f"chaos: {message}", flush=True)


def environment(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDRUN_")}
    return {**env, "KDRUN_CACHE_DIR": str(cache), **extra}


def run_to_end(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run kdrun to completion; its console output (stdout and stderr)."""
    proc = subprocess.run(
        [KDRUN, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise AssertionError(f"kdrun {' '.join(args)} failed:\n{proc.stdout[-3000:]}")
    return proc.stdout


def run_and_kill(args: list[str], cwd: Path, env: dict[str, str], *markers: str) -> str:
    """Start kdrun in its own process group and SIGKILL the group as soon as its output has
    shown every marker (a regular expression), in order; the output up to the kill."""
    proc = subprocess.Popen(
        [KDRUN, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(TIMEOUT_S, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    seen, pending = [], list(markers)
    try:
        for line in proc.stdout:
            seen.append(line)
            if pending and re.search(pending[0], line):
                pending.pop(0)
                if not pending:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
    finally:
        watchdog.cancel()
        proc.stdout.close()
        proc.wait()
    output = "".join(seen)
    if pending:
        raise AssertionError(f"never saw {pending[0]!r} before kdrun ended:\n{output[-3000:]}")
    if proc.returncode != -signal.SIGKILL:
        raise AssertionError(f"kdrun was not killed (exit {proc.returncode})")
    return output


def numbers(metrics: dict) -> dict:
    """Everything a run measured, minus what legitimately differs between an interrupted and
    an uninterrupted run: times, paths, cache counters, whether an artifact was reused, and the
    record's provenance and checksums (kdrun.store.record: the config holds cache_dir, history
    times)."""
    m = without_clocks(metrics)  # cost accounting's clocks are read, not results
    volatile = ("timing", "out_dir", "cache", "config_digest", "config", "overrides", "multirun")
    for key in (*volatile, "files", "checksum"):
        m.pop(key)
    m["teacher"].pop("source")
    m["baseline"].pop("source", None)
    for record in m["episodes"]:
        record["soft_labels"].pop("hit")
        record.pop("baseline_source", None)
        for name in ("hit", "seconds"):  # a resumed synthesis reuses its finished batches
            (record.get("transfer") or {}).pop(name, None)
    return m


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def expect(condition: bool, message: str, output: str = "") -> None:
    if not condition:
        raise AssertionError(f"{message}\n{output[-3000:]}")


def leftovers(cache: Path) -> list[str]:
    """Files a finished run should not have left: temporaries and teacher training state."""
    stray = list(cache.rglob(".*.tmp")) + list(cache.glob("teacher_state/*.pt"))
    return sorted(str(p.relative_to(cache)) for p in stray)


def single_run_chaos(work: Path, reference: dict) -> list[str]:
    """One command killed three times, then completed; returns what each re-run reported."""
    cache, args = work / "cache", [*BASE, "hydra.run.dir=run"]
    notes = []

    # Progress lines come at every tenth of a stage: 40% of 6 epochs is past epoch 2's end.
    out = run_and_kill(args, work, environment(cache), "teacher: training", TEACHER_PAST_EPOCH_2)
    expect(not (work / "run" / "metrics.json").exists(), "killed run wrote metrics", out)
    expect(any(cache.glob("teacher_state/*.pt")), "no teacher checkpoint before the kill", out)
    log("killed during teacher training (past 40% of its steps: after epoch 2)")

    paused = environment(cache, KDRUN_PAUSE_BEFORE_RENAME="*/soft_labels/*.pt")
    out = run_and_kill(args, work, paused, "teacher: resuming from epoch", "pausing")
    resumed = next(line for line in out.splitlines() if "resuming from epoch" in line)
    notes.append(resumed.split("] ", 2)[-1])
    expect(any(cache.glob("soft_labels/.*.tmp")), "soft labels were not mid-write", out)
    expect(not any(cache.glob("soft_labels/*.pt")), "soft labels already stored", out)
    log(f"re-run {notes[-1]!r}; killed while its soft labels were being written")

    out = run_and_kill(
        args, work, environment(cache), "soft labels: teacher labelled", "student step "
    )
    expect("teacher: cache hit" in out, "the finished teacher was not reused", out)
    expect("removed 1 temporary file(s)" in out, "the killed writer's temporary stayed", out)
    notes.append("soft labels rebuilt after removing the killed writer's temporary file")
    log("re-run reused the teacher, rebuilt the soft labels; killed during the student")

    out = run_to_end(args, work, environment(cache))
    final = read_metrics(work / "run")
    expect(numbers(final) == numbers(reference), "metrics differ from the uninterrupted run", out)
    expect(not leftovers(cache), f"left behind: {leftovers(cache)}", out)
    log("final re-run completed: metrics equal the uninterrupted run's")
    return notes


def sweep_chaos(work: Path, references: dict[str, dict]) -> None:
    """A two-job sweep killed during its second job, then re-run to the end."""
    cache = work / "cache"
    args = ["-m", *BASE, f"shots={','.join(references)}", "hydra.sweep.dir=sweep"]
    out = run_and_kill(args, work, environment(cache), "#1 :", "student step ")
    expect((work / "sweep/0/metrics.json").exists(), "job 0 had not finished", out)
    expect(not (work / "sweep/1/metrics.json").exists(), "job 1 had finished", out)
    log("sweep killed during its second job")
    out = run_to_end(args, work, environment(cache))
    expect("already holds a finished run" in out, "the finished job was not reused", out)
    for job, shots in enumerate(references):
        final = read_metrics(work / "sweep" / str(job))
        expect(numbers(final) == numbers(references[shots]), f"sweep job {job} differs", out)
    expect((work / "sweep" / "summary.csv").exists(), "no sweep summary", out)
    log("sweep re-run reused job 0, finished job 1: metrics equal the uninterrupted runs'")


def main(workdir: Path | None = None) -> dict:
    """Run every scenario; returns the figures measured (for the test and the README)."""
    start = time.perf_counter()
    work = Path(workdir or tempfile.mkdtemp(prefix="kdrun-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"working in {work}")

    ref_env = environment(work / "reference-cache")
    references = {}
    for shots in ("2", "5"):
        run_to_end([*BASE, f"shots={shots}", f"hydra.run.dir=reference-{shots}"], work, ref_env)
        references[shots] = read_metrics(work / f"reference-{shots}")
    log(f"uninterrupted reference runs done ({time.perf_counter() - start:.0f}s)")

    notes = single_run_chaos(work, references["5"])
    sweep_chaos(work, references)
    seconds = time.perf_counter() - start
    log(f"passed: 4 kills recovered, every final metric equals its reference ({seconds:.0f}s)")
    return {"seconds": seconds, "notes": notes, "workdir": str(work)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where runs and caches go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    ns = parser.parse_args()
    try:
        result = main(ns.workdir)
    except AssertionError as exc:
        print(f"chaos: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    if not ns.keep and ns.workdir is None:
        shutil.rmtree(result["workdir"], ignore_errors=True)
