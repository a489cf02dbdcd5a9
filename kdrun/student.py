"""Student stage: the student architecture on the K-shot set, with or without soft labels.

The distilled student and the CE baseline share initial weights and the step budget (same seed),
so their difference is what distillation bought. The teacher is never run here: distillation
reads the cached logits.
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
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.soft_labels import SoftLabels
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
) -> TrainingSet:
    """Labels alone: the shots. With soft labels: shots and pool, fresh or replayed views."""
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
    return ReplayedViews(
        images, labels, soft.params.to(dev), soft.logits.to(dev), normalize, pad, episode.ways
    )


def train_student(
    cfg: DictConfig,
    loss_cfg: DictConfig,
    augment: DictConfig,
    dataset: ImageDataset,
    episode: Episode,
    soft: SoftLabels | None,
    normalize: Normalize,
    runtime: Runtime,
    seed: int,
    stage: str,
) -> StudentResult:
    loss_fn = build_loss(loss_cfg, cfg.label_smoothing)
    if loss_fn.needs_teacher and soft is None:
        raise ValueError(f"loss {loss_cfg.name!r} needs the teacher's soft labels")
    train_set = student_training_set(
        dataset, episode, soft if loss_fn.needs_teacher else None, augment, normalize, runtime
    )
    torch.manual_seed(seed)
    model = runtime.place(build_model(cfg.arch, episode.ways))
    schedule = Schedule(
        cfg.steps, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip
    )
    start = time.perf_counter()
    history = fit(model, train_set, loss_fn, schedule, runtime, seed=seed, stage=stage)
    return StudentResult(model, time.perf_counter() - start, history)
