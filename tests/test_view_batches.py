"""A batch of stored views is full even when the set has fewer images than a batch (1-shot)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.runtime.device import resolve_runtime
from kdrun.train import Schedule, draws_per_pass, fit
from tests.conftest import compose_config


class Recorded:
    """`n` images with `views` stored views each; remembers every batch's image indices."""

    def __init__(self, n: int, views: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.labels = torch.arange(n) % 10
        self.x = torch.randn(n, 3, 32, 32, generator=gen)
        self.views = views
        self.seen: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, gen):
        self.seen.append(idx.clone())
        return self.x[idx], {"labels": self.labels[idx]}


def train(data: Recorded, steps: int, batch: int) -> None:
    runtime = resolve_runtime(compose_config(["device=cpu"]).device)
    torch.manual_seed(0)
    model = build_model("cnn_small", 10)
    ce = build_loss(OmegaConf.create({"name": "ce"}))
    fit(model, data, ce, Schedule(steps, batch, 0.01), runtime, seed=3, stage="student")


def test_ten_images_with_many_views_fill_a_batch_of_64():
    data = Recorded(10, views=1024)
    assert draws_per_pass(data, 64) == 70  # each image 7 times a pass, each with its own view
    train(data, steps=5, batch=64)
    assert [len(idx) for idx in data.seen] == [64] * 5
    for idx in data.seen:
        counts = torch.bincount(idx, minlength=10)  # 64 of a pass of 70: every image, <= 7 times
        assert counts.min() >= 1 and counts.max() <= 7


def test_repeats_never_exceed_the_stored_views():
    data = Recorded(10, views=2)
    assert draws_per_pass(data, 64) == 20  # two views each: 20 distinct inputs
    train(data, steps=3, batch=64)
    assert [len(idx) for idx in data.seen] == [20] * 3


def test_a_set_with_a_batch_of_images_draws_exactly_as_before():
    """Pool runs (and a set without stored views) keep their permutation, hence their numbers."""
    for data, n in ((Recorded(100, views=4), 100), (Recorded(10, views=1), 10)):
        assert draws_per_pass(data, 64) == n
        train(data, steps=2, batch=64)
        gen = torch.Generator().manual_seed(3)  # fit's generator: one permutation an epoch
        bs = min(64, n)
        assert [idx.tolist() for idx in data.seen] == [
            torch.randperm(n, generator=gen)[:bs].tolist() for _ in range(2)
        ]
