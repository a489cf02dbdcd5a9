"""The installed `kdrun` console script, run the way users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KDRUN = str(Path(sys.executable).with_name("kdrun"))


def kdrun(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "KDRUN_CACHE_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [KDRUN, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=3600
    )


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
def test_smoke_experiment_runs_and_its_teacher_beats_chance(tmp_path):
    proc = kdrun("experiment=smoke", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.json")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher"]["test_acc"] >= 0.5  # chance is 0.1 on 10 synthetic classes
    for name in (".hydra/config.yaml", "kdrun.log", "history.csv", "student.pt"):
        assert (run_dir / name).exists(), name
    assert (tmp_path / "outputs" / "cache" / "teacher").is_dir()  # relative to the launch dir
    assert "kd gain" in proc.stdout

    again = kdrun("experiment=smoke", "hydra.run.dir=pinned", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    pinned = json.loads((tmp_path / "pinned" / "metrics.json").read_text())
    assert pinned["cache"]["teacher"] == {"hit": 1, "miss": 0}
    assert pinned["cache"]["soft_labels"] == {"hit": 1, "miss": 0}
    assert "cache hit" in (tmp_path / "pinned" / "kdrun.log").read_text()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("shots=abc", "shots"),
        ("shots=0", "shots=0"),
        ("ways=11", "ways=11"),
        ("student=nope", "student/nope"),
        ("loss.alpha=2", "loss.alpha=2"),
        ("teacher.bogus=1", "bogus"),
    ],
)
@pytest.mark.slow
def test_bad_input_exits_nonzero_with_one_clear_message(tmp_path, override, needle):
    proc = kdrun("experiment=smoke", override, cwd=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "outputs").exists()  # a refused start leaves no run directory


HELP_WITHOUT_TORCH = """
import sys
from kdrun.cli.main import main
sys.argv = ["kdrun", *sys.argv[1:]]
try:
    main()
finally:
    print("torch imported:", "torch" in sys.modules)
"""


def test_help_lists_the_groups_a_user_picks_and_imports_no_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stderr
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = [line.split(":")[0] for line in groups.splitlines() if ": " in line]
    assert listed == [
        "data",
        "device",
        "experiment",
        "export",
        "hparams_search",
        "logger",
        "loss",
        "student",
        "teacher",
        "transfer",
    ]
    assert "torch imported: False" in proc.stdout  # torch is most of a run's start-up time
    assert "num_classes" not in proc.stdout  # data=cifar10, the default, has no such key
    assert "loss:\n  name: kd\n  alpha: 0.9\n  temperature: 4.0\n" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_help_shows_the_synthetic_keys_for_data_synthetic_only(tmp_path):
    synthetic = kdrun("data=synthetic", "--help", cwd=tmp_path).stdout
    for key in ("num_classes", "train_per_class", "test_per_class", "synthetic_seed"):
        assert f"\n  {key}: " in synthetic


def test_python_dash_m_works(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kdrun", "--cfg", "job", "experiment=smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stderr
    assert "source: synthetic" in proc.stdout


@pytest.mark.parametrize(
    "launcher,target",
    [
        ("joblib", "JoblibLauncher"),
        ("submitit_slurm", "SlurmLauncher"),
        ("kdrun_slurm", "SlurmLauncher"),
    ],
)
def test_launcher_configs_compose(tmp_path, launcher, target):
    proc = kdrun(f"hydra/launcher={launcher}", "experiment=smoke", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert target in proc.stdout and "kdrun.cli.callbacks.SweepSummary" in proc.stdout
