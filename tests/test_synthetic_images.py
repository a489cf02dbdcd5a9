"""Tests for the procedural image generator that CI smoke runs train on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdrun.data.synthetic_images import SYNTHETIC_CLASSES, make_synthetic_split


def _tiny_cnn(num_classes: int, image_size: int) -> nn.Module:
    """The smallest net CI smoke runs use, so learnability is checked at that capacity."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (image_size // 4) ** 2, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


def _to_input(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255.0).sub(0.5)


def _train_and_eval(per_class: int, steps: int, seed: int = 0) -> float:
    """Fixed step budget (not epochs) so the few-shot run gets the same optimisation effort."""
    train_x, train_y = make_synthetic_split(10, per_class, 32, seed=100 + seed)
    test_x, test_y = make_synthetic_split(10, 100, 32, seed=999)
    train_x, test_x = _to_input(train_x), _to_input(test_x)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _tiny_cnn(10, 32)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        order = torch.cat(
            [torch.randperm(len(train_x)) for _ in range(steps * 32 // len(train_x) + 1)]
        )
        for step in range(steps):
            idx = order[step * 32 : (step + 1) * 32]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (model(test_x).argmax(1) == test_y).float().mean().item()


def test_class_names() -> None:
    assert len(SYNTHETIC_CLASSES) == 10
    assert len(set(SYNTHETIC_CLASSES)) == 10


@pytest.mark.parametrize(("num_classes", "per_class", "size"), [(10, 7, 32), (3, 4, 16), (1, 2, 8)])
def test_shapes_dtypes_and_interleaved_labels(num_classes: int, per_class: int, size: int) -> None:
    images, labels = make_synthetic_split(num_classes, per_class, size, seed=0)
    n = num_classes * per_class
    assert images.shape == (n, 3, size, size)
    assert images.dtype == torch.uint8
    assert labels.shape == (n,)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, torch.arange(n) % num_classes)
    assert torch.bincount(labels, minlength=num_classes).tolist() == [per_class] * num_classes


def test_rejects_too_many_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic_split(11, 2, 32, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic_split(0, 2, 32, seed=0)


def test_deterministic_per_seed_and_independent_of_global_rng() -> None:
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first_x, first_y = make_synthetic_split(10, 20, 32, seed=7)
    assert torch.equal(torch.get_rng_state(), state), "generator must not consume the global RNG"
    torch.manual_seed(12345)
    second_x, second_y = make_synthetic_split(10, 20, 32, seed=7)
    assert torch.equal(first_x, second_x)
    assert torch.equal(first_y, second_y)
    other_x, _ = make_synthetic_split(10, 20, 32, seed=8)
    assert not torch.equal(first_x, other_x)


def test_deterministic_across_thread_counts() -> None:
    reference, _ = make_synthetic_split(10, 50, 32, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single, _ = make_synthetic_split(10, 50, 32, seed=3)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(reference, single)


def test_value_range_uses_full_intensity_scale() -> None:
    images, _ = make_synthetic_split(10, 50, 32, seed=0)
    values = images.float()
    assert images.min().item() == 0
    assert images.max().item() == 255
    assert 100 < values.mean().item() < 155
    assert values.std().item() > 40


def test_class_not_decodable_from_mean_colour() -> None:
    train_x, train_y = make_synthetic_split(10, 200, 32, seed=1)
    test_x, test_y = make_synthetic_split(10, 200, 32, seed=2)
    train_rgb, test_rgb = train_x.float().mean((2, 3)), test_x.float().mean((2, 3))
    centroids = torch.stack([train_rgb[train_y == k].mean(0) for k in range(10)])
    predicted = torch.cdist(test_rgb, centroids).argmin(1)
    accuracy = (predicted == test_y).float().mean().item()
    assert accuracy < 0.4, f"mean RGB alone reaches {accuracy:.2f}"


@pytest.mark.slow
def test_learnable_with_many_shots_and_harder_with_few() -> None:
    # 125 steps of batch 32 is two epochs over 200 images per class.
    many_shot = _train_and_eval(per_class=200, steps=125)
    few_shot = _train_and_eval(per_class=5, steps=125)
    assert many_shot >= 0.5, f"200-shot accuracy {many_shot:.2f}"
    assert few_shot <= many_shot - 0.15, f"5-shot {few_shot:.2f} vs 200-shot {many_shot:.2f}"
