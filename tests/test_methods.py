"""Every method end to end in the smoke setting, and the two ways teacher features arrive."""

from __future__ import annotations

import json

import pytest
import torch

from kdrun.losses import LOSSES
from kdrun.pipeline import run
from kdrun.stages import teacher_features
from tests.conftest import SMOKE_FAST

VIEWS = ["pool=10", "soft_labels.views=2"]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(LOSSES))
def test_each_method_runs_in_the_smoke_setting(compose_cfg, tmp_path, method):
    metrics = run(compose_cfg(*SMOKE_FAST, *VIEWS, f"loss={method}"), tmp_path / "run")
    assert metrics["student"]["loss"] == method
    assert 0.0 <= metrics["student"]["test_acc"] <= 1.0
    features = metrics["episodes"][0]["teacher_features"]
    assert (features is not None) == (method in {"fitnet", "at", "rkd"})
    if features:
        assert features["mode"] == "cache" and features["bytes"] > 0
    stages = json.dumps(metrics["timing"])
    assert ("teacher_features" in stages) == (features is not None)


def _count_teacher_targets(monkeypatch) -> dict[str, int]:
    calls = {"n": 0}
    real = teacher_features.teacher_targets

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_features, "teacher_targets", counting)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fitnet", "at", "rkd"])
def test_cached_features_are_what_the_online_teacher_computes_for_the_same_views(
    compose_cfg, tmp_path, monkeypatch, method
):
    from kdrun.data.views import ReplayedViews

    seen: dict[str, list] = {"cache": [], "online": []}
    real_batch = teacher_features.OnlineTeacher.batch
    real_replay = ReplayedViews.batch

    def record(mode, fn):
        def wrapped(self, idx, gen):
            x, targets = fn(self, idx, gen)
            feats = {k: v.clone() for k, v in targets.items() if k.startswith("teacher_feat:")}
            seen[mode].append(feats)
            return x, targets

        return wrapped

    monkeypatch.setattr(teacher_features.OnlineTeacher, "batch", record("online", real_batch))
    cfg = [*SMOKE_FAST, *VIEWS, f"loss={method}"]
    cached = run(compose_cfg(*cfg, "soft_labels.features=cache"), tmp_path / "cache")
    monkeypatch.setattr(ReplayedViews, "batch", record("cache", real_replay))
    run(compose_cfg(*cfg, "soft_labels.features=cache"), tmp_path / "cache2")
    monkeypatch.setattr(ReplayedViews, "batch", real_replay)
    calls = _count_teacher_targets(monkeypatch)
    online = run(compose_cfg(*cfg, "soft_labels.features=online"), tmp_path / "online")
    assert cached["episodes"][0]["teacher_features"]["mode"] == "cache"
    assert online["episodes"][0]["teacher_features"]["mode"] == "online"
    steps = 5  # SMOKE_FAST student.steps: the online teacher runs once per step
    assert calls["n"] >= steps and len(seen["online"]) == steps == len(seen["cache"])
    for c, o in zip(seen["cache"], seen["online"], strict=True):
        assert c.keys() == o.keys() and c
        for k in c:  # cached targets are fp16
            torch.testing.assert_close(c[k].float(), o[k], atol=2e-2, rtol=1e-2)


@pytest.mark.slow
def test_cached_features_mean_the_student_stage_never_runs_the_teacher(
    compose_cfg, tmp_path, monkeypatch
):
    cfg = compose_cfg(*SMOKE_FAST, *VIEWS, "loss=at")
    run(cfg, tmp_path / "a")
    calls = _count_teacher_targets(monkeypatch)
    again = run(cfg, tmp_path / "b")
    assert calls["n"] == 1  # one probe of the target size, no teacher run per step
    assert again["episodes"][0]["teacher_features"] == {
        "mode": "cache",
        "bytes": again["episodes"][0]["teacher_features"]["bytes"],
        "hit": True,
    }


@pytest.mark.slow
def test_features_go_online_without_views_or_above_the_size_limit(compose_cfg, tmp_path):
    no_views = run(compose_cfg(*SMOKE_FAST, "loss=fitnet", "soft_labels.views=0"), tmp_path / "a")
    assert no_views["episodes"][0]["teacher_features"]["mode"] == "online"
    big = run(
        compose_cfg(*SMOKE_FAST, *VIEWS, "loss=fitnet", "soft_labels.feature_cache_mb=0.01"),
        tmp_path / "b",
    )
    assert big["episodes"][0]["teacher_features"]["mode"] == "online"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fitnet", "at", "rkd"])
def test_a_run_pairs_the_layers_once_and_each_episode_binds_its_own_copy(
    compose_cfg, tmp_path, monkeypatch, method
):
    cls = LOSSES[method]
    resolved, bound = [], []
    real_resolve, real_bind = cls.resolve, cls.bind

    def resolve(self, *args):
        resolved.append(self)  # the object, not id(): a freed copy's id can be reused
        return real_resolve(self, *args)

    def bind(self, student):
        bound.append(self)
        return real_bind(self, student)

    monkeypatch.setattr(cls, "resolve", resolve)
    monkeypatch.setattr(cls, "bind", bind)
    metrics = run(compose_cfg(*SMOKE_FAST, *VIEWS, f"loss={method}", "episodes=2"), tmp_path / "r")
    assert len(metrics["episodes"]) == 2
    assert len(resolved) == 1  # in preflight, on weightless models
    assert len(bound) == 2 and bound[0] is not bound[1]
    assert all(copy is not resolved[0] for copy in bound)
