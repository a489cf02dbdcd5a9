"""data.val_per_class: labelled training images held out of every episode's shots, pool and
teacher set, the same for every seed, scored as val_acc; at 0 the draw is what it always was."""

from __future__ import annotations

import pytest
import torch

from kdrun.data.fewshot import episode_seed, resolve_pool, sample_episode, validation_mask
from kdrun.errors import ConfigError
from kdrun.pipeline import run
from kdrun.preflight import check_search, preflight
from tests.conftest import SMOKE_FAST

TRAIN = torch.arange(10).repeat_interleave(40)[
    torch.randperm(400, generator=torch.Generator().manual_seed(5))
]
TEST = torch.arange(10).repeat_interleave(7)


def _set(t: torch.Tensor) -> set[int]:
    return set(t.tolist())


def test_zero_validation_images_leave_the_draw_unchanged():
    a = sample_episode(TRAIN, TEST, 10, 4, 3, seed=2, pool=7)
    b = sample_episode(TRAIN, TEST, 10, 4, 3, seed=2, pool=7, val_per_class=0)
    assert torch.equal(a.shot_indices, b.shot_indices) and torch.equal(
        a.pool_indices, b.pool_indices
    )
    assert torch.equal(a.teacher_indices, b.teacher_indices) and len(b.val_indices) == 0


@pytest.mark.parametrize("ways", [4, 10])
def test_validation_images_are_disjoint_from_shots_pool_and_teacher_for_every_seed(ways):
    held = _set(torch.nonzero(validation_mask(TRAIN, 10, 6)).squeeze(1))
    assert len(held) == 60
    for e in range(6):
        ep = sample_episode(TRAIN, TEST, 10, ways, 5, episode_seed(3, e), pool=20, val_per_class=6)
        val = _set(ep.val_indices)
        assert len(val) == 6 * ways and val <= held  # the same images whatever the seed
        assert not val & _set(ep.shot_indices) and not val & _set(ep.pool_indices)
        assert not val & _set(ep.teacher_indices)
        # labels are remapped like the test split's, and the teacher keeps everything else
        assert torch.equal(torch.tensor(ep.classes)[ep.val_labels], TRAIN[ep.val_indices])
        assert len(ep.teacher_indices) + len(ep.val_indices) == 40 * ways
        assert torch.bincount(ep.val_labels, minlength=ways).tolist() == [6] * ways


def test_pool_auto_and_all_leave_room_for_the_validation_images(compose_cfg):
    cfg = compose_cfg(*SMOKE_FAST, "pool=all", "data.val_per_class=10")
    info = preflight(cfg).info
    assert resolve_pool(cfg, info.classes, info.train_counts) == 60 - 5 - 10


def test_preflight_counts_the_validation_images(compose_cfg):
    with pytest.raises(
        ConfigError, match="data.val_per_class=20 is invalid.*shots \\+ pool \\+ val"
    ):
        preflight(compose_cfg(*SMOKE_FAST, "pool=40", "data.val_per_class=20"))
    with pytest.raises(ConfigError, match="data.val_per_class=-1 is invalid"):
        preflight(compose_cfg(*SMOKE_FAST, "data.val_per_class=-1"))


def test_a_search_without_a_validation_split_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match="data.val_per_class=0 cannot drive a search.*test split"):
        check_search(compose_cfg(*SMOKE_FAST), ["loss.alpha"])
    with pytest.raises(ConfigError, match="searches data.val_per_class"):
        check_search(compose_cfg(*SMOKE_FAST, "data.val_per_class=5"), ["data.val_per_class"])
    check_search(compose_cfg(*SMOKE_FAST, "data.val_per_class=5"), ["loss.alpha"])


@pytest.mark.slow
def test_a_run_records_val_acc_beside_test_acc_on_its_own_teacher(compose_cfg, tmp_path):
    cache = tmp_path / "cache"
    plain = run(compose_cfg(*SMOKE_FAST, cache=cache), tmp_path / "plain")
    held = run(
        compose_cfg(*SMOKE_FAST, "data.val_per_class=8", "pool=40", "episodes=2", cache=cache),
        tmp_path / "held",
    )
    assert "val_acc" not in plain["student"] and "val_per_class" not in plain["setting"]
    assert held["setting"]["val_per_class"] == 8
    # the plain run's teacher saw the validation images: the held-out run trains its own
    assert plain["teacher"]["source"] == "trained" and held["teacher"]["source"] == "trained"
    for stage in ("student", "baseline"):
        m = held[stage]
        assert 0 <= m["val_acc"] <= 1 and m["val_images"] == 80 and "val_acc_ci95" in m
        for ep in held["episodes"]:
            assert ep[stage]["val_acc"] == ep["curves"][stage][-1]["val_acc"]
            assert all("val_acc" in p for p in ep["curves"][stage])
    mean = sum(ep["student"]["val_acc"] for ep in held["episodes"]) / 2
    assert held["student"]["val_acc"] == pytest.approx(mean)
    assert "val_acc" in (tmp_path / "held" / "history.csv").read_text().splitlines()[0]
    assert "val_acc" not in (tmp_path / "plain" / "history.csv").read_text().splitlines()[0]
