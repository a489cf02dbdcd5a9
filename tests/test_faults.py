"""Faults through the installed console script: a full disk, unwritable outputs, a checkpoint
that would run code. Each must end in one clear message and leave nothing a later run trusts."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import SMOKE_FAST
from tests.test_cli import KDRUN, kdrun


def assert_clean_failure(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
def test_a_full_disk_names_the_path_and_leaves_no_partial_entry(tmp_path):
    """RLIMIT_FSIZE makes every write past 1 MiB fail with EFBIG, as a full disk fails with
    ENOSPC: the 4 MB teacher cannot be stored."""
    cache = tmp_path / "cache"
    args = [KDRUN, *SMOKE_FAST, "hydra.run.dir=run"]
    env = {**os.environ, "KDRUN_CACHE_DIR": str(cache)}

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(
        args,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
        preexec_fn=limit_file_size,
    )
    assert_clean_failure(proc, f"cannot write {cache / 'teacher'}", "EFBIG", "free some space")
    assert proc.returncode == 2
    left = sorted(p.name for p in (cache / "teacher").iterdir() if p.suffix != ".lock")
    assert left == [], f"partial files left: {left}"
    assert not (tmp_path / "run" / "metrics.json").exists()

    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["teacher"]["test_acc"] > 0


@pytest.mark.slow
def test_a_run_dir_on_a_full_disk_fails_before_any_work(tmp_path):
    """Hydra writes its .hydra/ files before the job: a full disk is caught by a probe first."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    proc = subprocess.run(
        [KDRUN, *SMOKE_FAST, "hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
        preexec_fn=limit_file_size,
    )
    assert_clean_failure(proc, f"cannot write {tmp_path / 'run'}", "EFBIG", "hydra.run.dir")
    assert proc.returncode == 2 and not (tmp_path / "run").exists()  # nothing left behind


@pytest.mark.slow
@pytest.mark.parametrize("key", ["hydra.run.dir", "cache_dir"])
def test_an_output_path_through_a_file_is_named_in_one_message(tmp_path, key):
    (tmp_path / "a_file").write_text("not a directory")
    proc = kdrun(*SMOKE_FAST, f"{key}={tmp_path / 'a_file' / 'sub'}", cwd=tmp_path)
    assert_clean_failure(proc, f"cannot write {tmp_path / 'a_file' / 'sub'}", key)
    assert proc.returncode == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_read_only_cache_dir_is_named_in_one_message(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    try:
        proc = kdrun(*SMOKE_FAST, f"cache_dir={cache}", cwd=tmp_path)
    finally:
        cache.chmod(0o700)
    assert_clean_failure(proc, str(cache), "permission denied")


class Payload:
    """Unpickling this runs `touch marker`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "teacher.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload(marker)}, evil)
    assert not marker.exists()
    proc = kdrun("experiment=smoke", f"teacher.checkpoint={evil}", cwd=tmp_path)
    # It names what was blocked (os.system pickles as posix.system) and never advises the
    # unsafe way round, as torch's own message does.
    assert_clean_failure(proc, f"teacher.checkpoint={evil}", "import and call posix.system")
    assert "set to `False`" not in proc.stderr and "weights_only=False" not in proc.stderr
    assert proc.returncode == 2
    assert not marker.exists(), "the checkpoint's payload ran"
    # The same file unpickled without weights_only would have run it: the test is not vacuous.
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_log_file_on_a_full_disk_does_not_spray_tracebacks(tmp_path):
    """Every write to /dev/full fails with ENOSPC: the run still finishes, quietly."""
    proc = kdrun(
        *SMOKE_FAST,
        "hydra.job_logging.handlers.file.filename=/dev/full",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    assert (tmp_path / "run" / "metrics.json").exists()
