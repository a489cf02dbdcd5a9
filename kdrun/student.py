"""Student stage: the student architecture on the K-shot set, with or without soft labels.

The distilled student and the CE baseline share initial weights, batches and augmentation
(same seed), so their difference is what distillation bought.
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
from kdrun.device import Runtime
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit


@dataclass
class StudentResult:
    model: nn.Module
    seconds: float
    history: list[dict]


def train_student(
    cfg: DictConfig,
    loss_cfg: DictConfig,
    augment: DictConfig,
    dataset: ImageDataset,
    episode: Episode,
    soft_labels: torch.Tensor | None,
    normalize: Normalize,
    runtime: Runtime,
    seed: int,
    stage: str,
) -> StudentResult:
    loss_fn = build_loss(loss_cfg, cfg.label_smoothing)
    dev = runtime.device
    targets = {"labels": episode.shot_labels.to(dev)}
    if loss_fn.needs_teacher:
        assert soft_labels is not None, "a distillation loss needs the cached soft labels"
        targets["teacher_logits"] = soft_labels.to(dev)
    torch.manual_seed(seed)
    model = build_model(cfg.arch, episode.ways).to(dev)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    history = fit(
        model,
        dataset.train.images[episode.shot_indices].to(dev),
        targets,
        loss_fn,
        Schedule(cfg.steps, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip),
        normalize,
        runtime,
        crop_padding=augment.crop_padding,
        flip=augment.flip,
        seed=seed,
        stage=stage,
    )
    return StudentResult(model, time.perf_counter() - start, history)
