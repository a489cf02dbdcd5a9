"""Student stage: the student architecture on the K-shot set, with or without soft labels.

The distilled student and the CE baseline share initial weights and the step budget (same seed),
so their difference is what distillation bought. The teacher is not run here unless a feature
method asked for its features online: distillation reads the cached logits (and features).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.data.views import AugmentedSet, ReplayedViews
from kdrun.episode_inputs import EpisodeInputs
from kdrun.losses import Distiller
from kdrun.models import build_model
from kdrun.models.transplant import init_from
from kdrun.stages.soft_labels import SoftLabels
from kdrun.stages.teacher_features import OnlineTeacher, TeacherFeatures
from kdrun.train import Probe, Schedule, TrainingSet, curve_steps, draws_per_pass, fit


@dataclass
class StudentResult:
    model: nn.Module
    seconds: float
    history: list[dict]
    steps: int = 0
    curve: list[dict] = field(default_factory=list)  # test accuracy before the last step
    curve_seconds: float = 0.0
    init: dict | None = None  # student.init=teacher: what was copied (models/transplant.py)
    batch: int = 0  # inputs a step: student.batch_size, or fewer when the set holds fewer


def budget_steps(cfg: DictConfig, inputs: int) -> int:
    """student.steps when set; else student.epochs passes over the `inputs` distinct training
    inputs (each stored view counts), and never fewer than student.min_steps."""
    if cfg.steps is not None:
        return int(cfg.steps)
    per_pass = inputs / min(cfg.batch_size, inputs)
    return max(int(cfg.min_steps), math.ceil(cfg.epochs * per_pass))


def budget_key(cfg: DictConfig) -> str:
    """The setting that sets this budget: what to raise when a model has not converged."""
    return "student.steps" if cfg.steps is not None else "student.epochs"


def distinct_inputs(train_set: TrainingSet) -> int:
    """Images, times the stored views of each when the teacher labelled views."""
    logits = getattr(train_set, "teacher_logits", None)
    views = logits.shape[1] if logits is not None and logits.dim() == 3 else 1
    return len(train_set) * views


def student_training_set(
    inputs: EpisodeInputs, soft: SoftLabels | None, features: TeacherFeatures | None = None
) -> TrainingSet:
    """Labels alone: the shots. With soft labels: shots and pool, fresh or replayed views, plus
    the teacher's features for feature methods."""
    dataset, episode, normalize, augment = (
        inputs.dataset,
        inputs.episode,
        inputs.normalize,
        inputs.augment,
    )
    dev = inputs.runtime.device
    pad, flip = augment.crop_padding, augment.flip
    if soft is None:
        images = dataset.train.images[episode.shot_indices].to(dev)
        return AugmentedSet(images, {"labels": episode.shot_labels.to(dev)}, normalize, pad, flip)
    images = soft.images(dataset).to(dev)
    labels = soft.labels.to(dev)
    if soft.params is None:
        targets = {"labels": labels, "teacher_logits": soft.logits.to(dev).float()}
        return AugmentedSet(images, targets, normalize, pad, flip)
    cached = features.targets if features is not None and features.targets else {}
    return ReplayedViews(
        images,
        labels,
        soft.params.to(dev),
        soft.logits.to(dev),
        normalize,
        pad,
        episode.ways,
        {k: v.to(dev) for k, v in cached.items()},
    )


def train_student(
    cfg: DictConfig,
    distiller: Distiller,
    inputs: EpisodeInputs,
    soft: SoftLabels | None,
    *,
    stage: str,
    features: TeacherFeatures | None = None,
    online: TrainingSet | None = None,
    score: Callable[[nn.Module], dict[str, float]] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> StudentResult:
    """Train on the episode's shots (and the teacher's labels), seeded by the episode so the
    student and the baseline start from the same weights; `score` draws the learning curve at
    cfg.curve fractions of the budget; `online`: inputs a transfer labels in the loop (mix);
    `init_state` (the teacher's weights) seeds the matching tensors of the student."""
    runtime, seed = inputs.runtime, inputs.episode.seed
    if distiller.needs_teacher and soft is None and online is None:
        raise ValueError(f"loss {distiller.name!r} needs the teacher's soft labels")
    if online is not None and distiller.needs_teacher:
        train_set = online
    else:
        train_set = student_training_set(
            inputs, soft if distiller.needs_teacher else None, features
        )
    steps = budget_steps(cfg, distinct_inputs(train_set))
    if features is not None and features.mode == "online":
        train_set = OnlineTeacher(train_set, features.model, distiller, runtime)
    torch.manual_seed(seed)
    model = runtime.place(build_model(cfg.arch, inputs.episode.ways))
    init = init_from(model, init_state) if init_state is not None else None
    distiller.bind(model)  # after the student's weights: same initialisation as the baseline
    schedule = Schedule.from_config(cfg, steps)
    probe = None
    if score is not None:  # the final point is the run's own test score: not measured twice
        probe = Probe(tuple(s for s in curve_steps(steps, cfg.curve) if s < steps), score)
    start = time.perf_counter()
    history = fit(
        model, train_set, distiller, schedule, runtime, seed=seed, stage=stage, probe=probe
    )
    seconds = time.perf_counter() - start
    batch = min(schedule.batch_size, draws_per_pass(train_set, schedule.batch_size))
    if probe is None:
        return StudentResult(model, seconds, history, steps, init=init, batch=batch)
    return StudentResult(model, seconds, history, steps, probe.points, probe.seconds, init, batch)
