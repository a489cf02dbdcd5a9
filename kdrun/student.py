"""Student stage: the student architecture on the K-shot set, with or without soft labels.

The distilled student and the CE baseline share initial weights and the step budget (same seed),
so their difference is what distillation bought. The teacher is not run here unless a feature
method asked for its features online: distillation reads the cached logits (and features).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.data import ImageDataset
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import Episode
from kdrun.data.views import AugmentedSet, ReplayedViews
from kdrun.device import Runtime
from kdrun.losses import Distiller
from kdrun.models import build_model
from kdrun.soft_labels import SoftLabels
from kdrun.teacher_features import OnlineTeacher, TeacherFeatures
from kdrun.train import Schedule, TrainingSet, fit


@dataclass
class StudentResult:
    model: nn.Module
    seconds: float
    history: list[dict]


def student_training_set(
    dataset: ImageDataset,
    episode: Episode,
    soft: SoftLabels | None,
    augment: DictConfig,
    normalize: Normalize,
    runtime: Runtime,
    features: TeacherFeatures | None = None,
) -> TrainingSet:
    """Labels alone: the shots. With soft labels: shots and pool, fresh or replayed views, plus
    the teacher's features for feature methods."""
    dev = runtime.device
    pad, flip = augment.crop_padding, augment.flip
    if soft is None:
        images = dataset.train.images[episode.shot_indices].to(dev)
        return AugmentedSet(images, {"labels": episode.shot_labels.to(dev)}, normalize, pad, flip)
    images = dataset.train.images[soft.indices].to(dev)
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
    augment: DictConfig,
    dataset: ImageDataset,
    episode: Episode,
    soft: SoftLabels | None,
    normalize: Normalize,
    runtime: Runtime,
    seed: int,
    stage: str,
    features: TeacherFeatures | None = None,
) -> StudentResult:
    if distiller.needs_teacher and soft is None:
        raise ValueError(f"loss {distiller.name!r} needs the teacher's soft labels")
    train_set = student_training_set(
        dataset,
        episode,
        soft if distiller.needs_teacher else None,
        augment,
        normalize,
        runtime,
        features,
    )
    if features is not None and features.mode == "online":
        train_set = OnlineTeacher(train_set, features.model, distiller, runtime)
    torch.manual_seed(seed)
    model = runtime.place(build_model(cfg.arch, episode.ways))
    distiller.bind(model)  # after the student's weights: same initialisation as the baseline
    schedule = Schedule(
        cfg.steps, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip
    )
    start = time.perf_counter()
    history = fit(model, train_set, distiller, schedule, runtime, seed=seed, stage=stage)
    return StudentResult(model, time.perf_counter() - start, history)
