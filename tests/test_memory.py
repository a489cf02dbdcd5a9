"""Resources checked before work (issue 22, class 5): the memory a run will hold is estimated
from its config and the data's counts, and compared with what the machine (or its cgroup) has."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdrun.data import SourceInfo
from kdrun.errors import ConfigError
from kdrun.preflight import check_memory, memory_terms
from kdrun.runtime.memory import Available, available_memory, cgroup_room
from tests.conftest import compose_config

GIB = 2**30
CIFAR = SourceInfo(classes=list("abcdefghij"), train_counts=[5000] * 10, test_counts=[1000] * 10)


def _cgroup(tmp_path: Path, limit: str, current: str) -> Path:
    (tmp_path / "memory.max").write_text(limit + "\n")
    (tmp_path / "memory.current").write_text(current + "\n")
    return tmp_path


def test_cgroup_limit_caps_the_machine(tmp_path):
    root = _cgroup(tmp_path, "1000000", "400000")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  100 kB\nMemAvailable:   50000000 kB\n")
    assert cgroup_room(root) == 600000
    assert available_memory(root, meminfo) == Available(
        600000, f"the cgroup limit {root}/memory.max"
    )


def test_unlimited_cgroup_leaves_memavailable(tmp_path):
    root = _cgroup(tmp_path, "max", "400000")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:   2048 kB\n")
    assert cgroup_room(root) is None
    assert available_memory(root, meminfo) == Available(2048 * 1024, "MemAvailable")


def test_this_machine_reports_some_memory():
    assert available_memory().nbytes > 0


def test_default_run_is_small():
    terms = memory_terms(compose_config([]), CIFAR, pool=500)
    assert terms["data.image_size"] == 60000 * 3 * 32 * 32
    assert sum(terms.values()) < GIB  # the default recipe must never be refused on a laptop
    check_memory(compose_config([]), CIFAR, 500, Available(2 * GIB, "MemAvailable"))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["soft_labels.views=2000000"], "soft_labels.views=2000000"),
        (["data.image_size=1024", "teacher=resnet20", "student=resnet20"], "data.image_size=1024"),
        (["transfer=inversion", "transfer.images=10000000"], "transfer.images=10000000"),
        (["eval_batch_size=10000000"], "eval_batch_size=10000000"),
    ],
)
def test_refusal_names_the_largest_part(overrides, key):
    cfg = compose_config(overrides)
    pool = 500 if cfg.transfer.name == "pool" else 0
    with pytest.raises(ConfigError) as err:
        check_memory(cfg, CIFAR, pool, Available(16 * GIB, "MemAvailable"))
    message = str(err.value)
    assert message.startswith(f"{key} needs more memory than this machine has")
    assert f"Lower {key.split('=')[0]} (the largest part)" in message
    assert "only 16.0 GiB is available (MemAvailable)" in message


def test_views_scale_the_soft_labels():
    one = memory_terms(compose_config(["soft_labels.views=2"]), CIFAR, pool=500)
    two = memory_terms(compose_config(["soft_labels.views=4"]), CIFAR, pool=500)
    assert two["soft_labels.views"] == 2 * one["soft_labels.views"]
    # 5050 images x 4 views x (10 fp16 logits + 61 bytes of view parameters)
    assert two["soft_labels.views"] == 5050 * 4 * (10 * 2 + 61)
