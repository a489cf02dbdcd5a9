"""Cost of the learning curve: scoring the student on the test split at the curve's points
against the student stage of the default recipe (10-way 5-shot, pool 500, 4 views: 20,200
inputs, `student.epochs` passes). Target: the curve adds ≤ 5% to the stage.

The stage is timed per step over a short run and scaled to the default budget's steps; the
scoring is timed on a quarter of a CIFAR-10-sized test split and scaled to its 10,000 images
(scoring is batches of `eval_batch_size`, so its time is linear in the images); the two
alternate round by round and the target is judged by the 95% interval of the per-round ratio."""

from __future__ import annotations

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from benchmarks.common import Target, cifar_sized, compare, cpu_runtime
from kdrun.config import register_configs
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.stages.student import budget_steps
from kdrun.train import Schedule, curve_steps, fit, predict

STEPS, WAYS, INPUTS = 20, 10, (50 + 10 * 500) * 4  # shots and pool, 4 views each
TEST, SCORED = 10_000, 2_500  # the test split's size; the images scored per round


def main() -> None:
    register_configs()
    with initialize_config_module("kdrun.conf", version_base="1.3"):
        cfg = compose("config")
    budget = budget_steps(cfg.student, INPUTS)
    points = len([s for s in curve_steps(budget, cfg.student.curve) if s < budget])
    images, labels, normalize = cifar_sized(5_000)
    test_images, _, _ = cifar_sized(SCORED, seed=1)
    logits = torch.randn(len(images), WAYS)  # cached soft labels: values do not set the speed
    train_set = AugmentedSet(
        images, {"labels": labels, "teacher_logits": logits}, normalize, 4, True
    )
    kd = build_loss(OmegaConf.create({"name": "kd", "alpha": 0.9, "temperature": 4.0}))
    model = build_model(cfg.student.arch, WAYS)

    def train() -> None:
        schedule = Schedule(STEPS, cfg.student.batch_size, cfg.student.lr)
        fit(model, train_set, kd, schedule, cpu_runtime(), seed=0, stage="bench")

    def score() -> None:
        predict(model, test_images, normalize, cpu_runtime(), cfg.eval_batch_size)

    compare(
        f"learning curve vs the default student stage ({points} extra scorings of 10,000 "
        f"test images vs {budget} steps)",
        score,
        train,
        Target("<=", 0.05),
        ratio=lambda t_score, t_train: (
            points * t_score * TEST / SCORED / (t_train / STEPS * budget)
        ),
        labels=(f"scoring {SCORED:,} test images", f"{STEPS} student steps"),
    )


if __name__ == "__main__":
    main()
