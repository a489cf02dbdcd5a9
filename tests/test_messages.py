"""Messages that must send the user the right way: an interrupted run says where it stopped and
how to resume, a broken config file names its line, an output under the run directory names
hydra.run.dir, and a run directory is never shared by two live runs nor blocked by a dead one.
(The one-paragraph refusals themselves are rows of tests/test_bad_input.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMOKE_FAST
from tests.test_cli import KDRUN, kdrun

LONG_STUDENT = ["experiment=smoke", "teacher.epochs=2", "student.steps=3000"]


def _interrupted_run(tmp_path: Path, sig: signal.Signals) -> tuple[int, str, str]:
    """Start a smoke run with a long student budget, send `sig` once the student trains;
    returns the exit status, stderr up to the signal and after it."""
    env = {**os.environ, "KDRUN_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(
        [KDRUN, *LONG_STUDENT, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python
        # keeps an inherited SIG_IGN: give the child the default a terminal user has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if re.search(r"\bstudent\b", line):  # its first progress line: inside the loop
                break
        else:
            pytest.fail("student training never started:\n" + "".join(seen))
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen), rest


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
@pytest.mark.parametrize(
    "sig,rc,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_signal_during_training_ends_in_one_line_and_a_rerun_resumes(tmp_path, sig, rc, word):
    code, before, after = _interrupted_run(tmp_path, sig)
    run_dir = tmp_path / "run"
    assert code == rc, after[-3000:]
    assert "Traceback" not in after, after[-3000:]
    lines = [line for line in after.splitlines() if line.strip()]
    assert len(lines) == 1, after[-3000:]
    # Sent after an epoch line, so it lands in the training loop (or in the stage around it).
    assert re.search(f"{word}.* during student training of episode 0: ", lines[0]), lines[0]
    assert "finished stages are cached; re-run the same command to resume" in lines[0]
    assert "finished stages are cached" in (run_dir / "kdrun.log").read_text()
    assert not (run_dir / "metrics.json").exists()
    assert "teacher: cache hit" not in before

    # The same command again: the teacher and the soft labels come from the cache.
    code, before, after = _interrupted_run(tmp_path, signal.SIGTERM)
    assert code == 143, after[-3000:]
    assert "teacher: cache hit" in before and "soft labels: cache hit" in before, before


def test_a_yaml_error_in_a_selected_experiment_names_file_and_line(tmp_path):
    conf = tmp_path / "my_conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nways: 3\nshots: [1, 2\nseed: 4\n")
    proc = kdrun("--config-dir", str(tmp_path / "my_conf"), "experiment=mine", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 5, proc.stderr
    assert f"{conf / 'mine.yaml'}, line 4, column 5: not valid YAML" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_hydra_full_error_still_shows_the_traceback(tmp_path):
    conf = tmp_path / "my_conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("ways: [3\nshots: 2\n")
    proc = kdrun(
        "-cd",
        str(tmp_path / "my_conf"),
        "experiment=mine",
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "yaml.parser.ParserError" in proc.stderr


@pytest.mark.slow
def test_a_failed_write_in_the_run_dir_names_hydra_run_dir(tmp_path):
    (tmp_path / "run" / "history.csv").mkdir(parents=True)  # the file cannot replace it
    proc = kdrun(
        *SMOKE_FAST,
        "hydra.run.dir=run",
        cwd=tmp_path,
        env={"KDRUN_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(error) == 1 and f"cannot write {tmp_path / 'run' / 'history.csv'}" in error[0]
    assert "point hydra.run.dir at a writable directory" in error[0]


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
def test_a_dead_runs_lock_does_not_block_a_rerun(tmp_path):
    """A run killed with SIGKILL leaves .kdrun.lock and its pid behind; the kernel dropped its
    flock, so the same command in the same directory runs."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = (
        "import fcntl, os, signal\n"
        f"f = open({str(run_dir / '.kdrun.lock')!r}, 'w')\n"
        "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "f.write(str(os.getpid())); f.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", holder], timeout=60)
    assert died.returncode == -signal.SIGKILL and (run_dir / ".kdrun.lock").read_text()
    proc = kdrun(
        *SMOKE_FAST,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"KDRUN_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "metrics.json").exists()
