"""Teacher stage: load a checkpoint, reuse a cached teacher, or train one on the full labels."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.data import ImageDataset
from kdrun.data.fewshot import Episode
from kdrun.data.views import AugmentedSet
from kdrun.episode_inputs import EpisodeInputs
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.stages.teacher_checkpoint import checkpoint_digest, load_checkpoint
from kdrun.store.cache import digest
from kdrun.store.checkpoint import TrainingCheckpoint
from kdrun.train import Schedule, cpu_state_dict, fit, steps_per_epoch

log = logging.getLogger(__name__)

EXPLODED = 1e6  # a teacher whose loss ends this many times above its first step's has diverged
TRAINING_KEYS = (
    "arch",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "grad_clip",
)


@dataclass
class TeacherResult:
    model: nn.Module
    identity: str  # names these exact weights in every downstream cache key
    source: str  # "checkpoint", "cache" or "trained"
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


def teacher_key(cfg: DictConfig, dataset: ImageDataset, episode: Episode, augment: dict) -> str:
    """Everything that changes the trained weights; not the device (results are equivalent)."""
    hparams = {k: cfg[k] for k in TRAINING_KEYS}
    if cfg.optimizer != "sgd":  # SGD teachers keep the keys they had before the choice existed
        hparams["optimizer"] = cfg.optimizer
    if episode.val_per_class:  # trained without the validation images: another teacher
        hparams["val_per_class"] = episode.val_per_class
    return digest(
        {
            "kind": "teacher",
            "v": 1,
            **hparams,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "data": dataset.identity,
            "classes": episode.classes,
            "augment": augment,
        }
    )


def prepare_teacher(cfg: DictConfig, inputs: EpisodeInputs) -> TeacherResult:
    """The teacher from `teacher.checkpoint`, the cache, or trained now (and cached)."""
    runtime, cache, episode = inputs.runtime, inputs.cache, inputs.episode
    ways = episode.ways
    if cfg.checkpoint:
        model = runtime.place(load_checkpoint(cfg.checkpoint, cfg.arch, ways))
        identity = digest({"checkpoint": checkpoint_digest(cfg.checkpoint), "arch": cfg.arch})
        log.info("teacher: loaded %s from %s", cfg.arch, cfg.checkpoint)
        return TeacherResult(model, identity, "checkpoint")
    key = teacher_key(cfg, inputs.dataset, episode, OmegaConf.to_container(inputs.augment))
    start = time.perf_counter()
    checkpoint = TrainingCheckpoint(cache, key, cfg.checkpoint_every, cfg.resume, "teacher")
    entry, hit = cache.get_or_build(
        "teacher",
        key,
        lambda: _train(cfg, inputs, checkpoint),
    )
    checkpoint.discard()  # the finished teacher is stored: its training state is not needed
    model = build_model(cfg.arch, ways)
    model.load_state_dict(entry["state_dict"])
    model = runtime.place(model)
    if hit:
        log.info("teacher: cache hit, reusing %s (no training)", cache.path("teacher", key))
        return TeacherResult(model, key, "cache", history=entry["history"])
    seconds = time.perf_counter() - start
    log.info("teacher: trained in %.1fs, saved to %s", seconds, cache.path("teacher", key))
    return TeacherResult(model, key, "trained", seconds, entry["history"])


def _train(
    cfg: DictConfig, inputs: EpisodeInputs, checkpoint: TrainingCheckpoint | None = None
) -> dict:
    """Train on every training image of the episode's classes, resuming from and saving to
    `checkpoint`; returns the cache entry."""
    dataset, episode, runtime, augment = (
        inputs.dataset,
        inputs.episode,
        inputs.runtime,
        inputs.augment,
    )
    torch.manual_seed(cfg.seed)
    model = runtime.place(build_model(cfg.arch, episode.ways))
    images = dataset.train.images[episode.teacher_indices].to(runtime.device)
    labels = episode.teacher_labels.to(runtime.device)
    steps = cfg.epochs * steps_per_epoch(len(images), min(cfg.batch_size, len(images)))
    log.info("teacher: training %s on %d images for %d epochs", cfg.arch, len(images), cfg.epochs)
    train_set = AugmentedSet(
        images, {"labels": labels}, inputs.normalize, augment.crop_padding, augment.flip
    )
    history = fit(
        model,
        train_set,
        build_loss(OmegaConf.create({"name": "ce"}), cfg.label_smoothing),
        Schedule.from_config(cfg, steps),
        runtime,
        seed=cfg.seed,
        stage="teacher",
        checkpoint=checkpoint,
        explode_ratio=EXPLODED,
    )
    return {"state_dict": cpu_state_dict(model), "arch": cfg.arch, "history": history}
