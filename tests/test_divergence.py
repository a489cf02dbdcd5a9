"""Divergence is a result: a non-finite loss or weight stops its stage with one paragraph and
exit 2, stores nothing, and a sweep records the job as diverged while the others finish."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from kdrun.errors import DivergedError
from kdrun.pipeline import run
from kdrun.store.cache import ArtifactCache
from tests.conftest import SMOKE_FAST
from tests.test_cli import KDRUN

BLOW_UP = ["teacher.lr=1e6", "teacher.grad_clip=0"]


@pytest.mark.slow
def test_a_diverging_teacher_stops_with_exit_2_and_is_never_stored(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [KDRUN, *SMOKE_FAST, *BLOW_UP, "hydra.run.dir=run"],
        cwd=tmp_path,
        env={**os.environ, "KDRUN_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "teacher diverged at step" in proc.stderr
    assert "teacher.lr" in proc.stderr and "teacher.grad_clip" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((cache / "teacher").glob("*.pt")) if (cache / "teacher").exists() else True
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "diverged" and record["stage"] == "teacher"
    assert "student" not in record  # no number is reported for a diverged run


def test_a_diverging_student_is_caught_and_its_baseline_not_cached(compose_cfg, tmp_path):
    cfg = compose_cfg(*SMOKE_FAST, "student.lr=1e6", "student.grad_clip=0", "student.steps=20")
    with pytest.raises(DivergedError, match="student diverged at step") as info:
        run(cfg, tmp_path / "run")
    assert "student.lr" in str(info.value)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_cache_neither_stores_nor_trusts_non_finite_tensors(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(ValueError, match="not finite"):
        cache.save("teacher", "k1", {"state_dict": {"w": torch.tensor([1.0, float("nan")])}})
    assert not cache.path("teacher", "k1").exists()
    # An older kdrun may have stored one: it is moved aside and rebuilt, never reused.
    cache.save("teacher", "k2", {"state_dict": {"w": torch.ones(2)}})
    path = cache.path("teacher", "k2")
    entry = torch.load(path, weights_only=True)
    entry["state_dict"]["w"][0] = float("inf")
    torch.save(entry, path)
    from kdrun.store.cache import checksum_record, record_path

    record_path(path).write_text(json.dumps(checksum_record(path)))
    assert cache.load("teacher", "k2") is None
    assert path.with_name(path.name + ".corrupt").exists()


@pytest.mark.slow
def test_a_diverged_job_in_a_sweep_is_reported_and_the_others_finish(tmp_path):
    proc = subprocess.run(
        [
            KDRUN,
            "-m",
            *SMOKE_FAST,
            "student.grad_clip=0",
            "student.lr=0.02,1e6",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        env={**os.environ, "KDRUN_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {
        p.parent.name: json.loads(p.read_text())
        for p in (tmp_path / "sweep").glob("*/metrics.json")
    }
    assert records["1"]["status"] == "diverged"
    assert records["0"].get("status", "ok") == "ok" and records["0"]["student"]["test_acc"] > 0
    summary = (tmp_path / "sweep" / "summary.csv").read_text()
    assert "diverged" in summary and "nan" not in summary.lower()


def test_a_teacher_whose_finite_loss_exploded_is_diverged_and_not_cached(compose_cfg, tmp_path):
    """A finite loss 1e6x above the first step's is divergence too (issue 22, class 8): two
    steps at lr=1e9 end near 1e33, still finite."""
    cfg = compose_cfg(
        *SMOKE_FAST, "teacher.lr=1e9", "teacher.grad_clip=0", "teacher.batch_size=300"
    )
    with pytest.raises(
        DivergedError, match="teacher diverged at step 2: the loss exploded"
    ) as info:
        run(cfg, tmp_path / "run")
    assert "although it stayed finite" in str(info.value) and "teacher.lr" in str(info.value)
    assert not list((tmp_path / "cache").rglob("teacher/*.pt"))
