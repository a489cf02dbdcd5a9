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


def test_every_transfer_source_on_real_cifar10_at_a_tiny_budget(cifar10_root, tmp_path):
    """Each `transfer` option end to end from the console script on the real images: 2-way
    5-shot, a one-epoch ResNet-8 teacher (it has BatchNorm) trained once for all five."""
    common = (
        f"data.root={cifar10_root}",
        "data.download=false",
        "ways=2",
        "shots=5",
        "seed=1",
        "teacher.arch=resnet8",
        "teacher.epochs=1",
        "student.steps=60",
        "device=cpu",
    )
    sources = {
        "pool": ["pool=20"],
        "shots": ["soft_labels.views=8", "soft_labels.mix=cutmix"],
        "mix": ["transfer.images=200"],
        "inversion": ["transfer.images=16", "transfer.batch_size=8", "transfer.steps=5"],
        "generator": ["transfer.images=16", "transfer.batch_size=8", "transfer.steps=3"],
    }
    env = {"KDRUN_CACHE_DIR": str(tmp_path / "cache")}
    for name, extra in sources.items():
        proc = kdrun(
            *common, f"transfer={name}", *extra, f"hydra.run.dir={name}", cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        record = metrics["episodes"][0]
        assert record["transfer"]["method"] == name
        assert record["pool_size"] == (2 * 20 if name == "pool" else 0)  # ways x pool
        assert metrics["cache"]["teacher"] == (
            {"hit": 0, "miss": 1} if name == "pool" else {"hit": 1, "miss": 0}
        )
        assert (tmp_path / name / "transfer.png").exists() == (
            name in ("mix", "inversion", "generator")
        )
        if name in ("inversion", "generator"):
            assert record["transfer"]["images"] == 16 and metrics["timing"]["transfer"] > 0
        assert 0.0 <= metrics["student"]["test_acc"] <= 1.0
