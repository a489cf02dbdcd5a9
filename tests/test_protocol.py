"""Few-shot protocol: episodes, transfer pools, replayed views, paired gains with CIs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdrun.data.augment import Normalize
from kdrun.data.fewshot import episode_seed, sample_episode
from kdrun.data.views import ReplayedViews, render_views, sample_view_params, view_batches
from kdrun.measure.metrics import mean_ci
from kdrun.pipeline import run
from kdrun.runtime.device import Runtime
from kdrun.stages.soft_labels import distillation_set
from kdrun.train import predict_inputs
from tests.conftest import SMOKE_FAST

TRAIN = torch.arange(10).repeat_interleave(40)
TEST = torch.arange(10).repeat_interleave(10)


def test_pool_never_holds_a_shot_and_comes_from_the_training_split():
    ep = sample_episode(TRAIN, TEST, 10, ways=4, shots=3, seed=2, pool=7)
    shots, pool = set(ep.shot_indices.tolist()), set(ep.pool_indices.tolist())
    assert len(pool) == 4 * 7 and not shots & pool
    assert set(TRAIN[ep.pool_indices].tolist()) == set(ep.classes)
    indices, labels = distillation_set(ep)
    assert labels[:12].tolist() == ep.shot_labels.tolist() and (labels[12:] == -1).all()
    assert len(indices) == 12 + 28


def test_shots_are_the_same_with_or_without_a_pool():
    a = sample_episode(TRAIN, TEST, 10, 4, 3, seed=2)
    b = sample_episode(TRAIN, TEST, 10, 4, 3, seed=2, pool=5)
    assert torch.equal(a.shot_indices, b.shot_indices)


def test_episodes_are_independent_draws():
    seeds = [episode_seed(0, e) for e in range(5)]
    assert seeds[0] == 0 and len(set(seeds)) == 5
    eps = [sample_episode(TRAIN, TEST, 10, 5, 2, s) for s in seeds]
    assert len({tuple(e.classes) for e in eps}) > 1
    assert len({tuple(e.shot_indices.tolist()) for e in eps}) == 5


def test_mean_ci():
    out = mean_ci([0.1, 0.2, 0.3, 0.4])
    assert abs(out["mean"] - 0.25) < 1e-12
    assert abs(out["ci95"] - 1.96 * out["std"] / 2) < 1e-12
    assert mean_ci([0.5])["ci95"] == 0.0


class Recorder(nn.Module):
    """A stand-in teacher that remembers every input it labelled."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return torch.zeros(len(x), 3)


def _images(n=12):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=gen).to(torch.uint8)


def test_replayed_views_equal_the_views_the_teacher_labelled_bit_for_bit():
    for mix in ("none", "mixup", "cutmix"):
        images = _images()
        n, views = len(images), 4
        runtime = Runtime(torch.device("cpu"), None, False)
        normalize = Normalize(images, runtime.device)
        params = sample_view_params(n, views, 2, True, mix, 1.0, 16, seed=5)
        rec = Recorder()
        for v in range(views):  # how soft_labels.py runs the teacher
            predict_inputs(rec, view_batches(images, params, v, normalize, 2, 5), runtime)
        labelled = torch.cat(rec.inputs).view(views, n, 3, 16, 16)  # view-major, as labelled
        # Tag each stored logit row with its (image, view) so a batch reveals what it replayed.
        tags = torch.zeros(n, views, 3)
        tags[..., 0] = torch.arange(n)[:, None].float()
        tags[..., 1] = torch.arange(views)[None, :].float()
        labels = torch.tensor([0, 1, 2, -1] * 3)
        replay = ReplayedViews(images, labels, params, tags, normalize, 2, 3)
        x, batch = replay.batch(torch.tensor([3, 0, 7, 7, 11]), torch.Generator().manual_seed(1))
        for k in range(5):
            i, v = int(batch["teacher_logits"][k, 0]), int(batch["teacher_logits"][k, 1])
            assert torch.equal(x[k], labelled[v, i]), (mix, k)
            again = render_views(images, torch.tensor([i]), torch.tensor([v]), params, normalize, 2)
            assert torch.equal(again[0], x[k])
        if mix == "none":  # unmixed: one-hot for shots, no label mass for pool images
            expected = (batch["labels"] >= 0).float()
            assert torch.equal(batch["label_dist"].sum(1), expected)


@pytest.mark.slow
def test_episodes_pool_and_views_run_end_to_end_and_repeat_exactly(compose_cfg, tmp_path):
    overrides = [*SMOKE_FAST, "episodes=3", "ways=4", "pool=10", "soft_labels.views=2"]
    a = run(compose_cfg(*overrides), tmp_path / "a")
    assert len(a["episodes"]) == 3 and a["setting"]["pool"] == 10
    assert len({tuple(r["classes"]) for r in a["episodes"]}) > 1  # new classes each episode
    gains = [r["kd_gain"] for r in a["episodes"]]
    assert abs(a["kd_gain"] - sum(gains) / 3) < 1e-12 and a["kd_gain_ci95"] >= 0
    assert all(r["soft_labels"]["bytes"] > 0 for r in a["episodes"])
    b = run(compose_cfg(*overrides, cache=tmp_path / "other"), tmp_path / "b")
    assert [r["student"] for r in a["episodes"]] == [r["student"] for r in b["episodes"]]


@pytest.mark.slow
def test_one_teacher_serves_every_episode_when_the_classes_do_not_change(compose_cfg, tmp_path):
    out = run(compose_cfg(*SMOKE_FAST, "episodes=3"), tmp_path / "run")
    assert out["cache"]["teacher"] == {"hit": 2, "miss": 1}
