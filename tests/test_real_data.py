"""Real CIFAR-10 (the shared class-folder copy), end to end through the console script."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import kdrun

pytestmark = pytest.mark.slow


def test_real_cifar10_end_to_end_and_cached_rerun(cifar10_root, tmp_path):
    args = (
        f"data.root={cifar10_root}",
        "data.download=false",
        "ways=2",
        "shots=5",
        "seed=1",
        "teacher=cnn_small",
        "teacher.epochs=2",
        "student.steps=100",
        "device=cpu",
    )
    env = {"KDRUN_CACHE_DIR": str(tmp_path / "cache")}
    first = kdrun(*args, "hydra.run.dir=first", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    m1 = json.loads((tmp_path / "first" / "metrics.json").read_text())
    assert m1["teacher"]["test_images"] == 2000  # the whole test split of the two classes
    assert m1["teacher"]["test_acc"] > 0.75  # chance is 0.5
    assert m1["baseline"]["test_acc"] > 0.5
    assert m1["cache"]["images"]["miss"] == 1 and m1["cache"]["teacher"]["miss"] == 1

    second = kdrun(*args, "hydra.run.dir=second", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    m2 = json.loads((tmp_path / "second" / "metrics.json").read_text())
    for kind in ("images", "teacher", "soft_labels"):
        assert m2["cache"][kind] == {"hit": 1, "miss": 0}, kind
    assert m2["teacher"]["test_acc"] == m1["teacher"]["test_acc"]
    assert m2["student"]["test_acc"] == m1["student"]["test_acc"]
    assert m2["timing"]["data"] < m1["timing"]["data"]
