"""Teacher stage: load a checkpoint, reuse a cached teacher, or train one on the full labels."""

from __future__ import annotations

import logging
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.cache import ArtifactCache, digest, file_digest
from kdrun.checkpoint import TrainingCheckpoint
from kdrun.config import ConfigError
from kdrun.data import ImageDataset
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import Episode
from kdrun.data.views import AugmentedSet
from kdrun.device import Runtime
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, cpu_state_dict, fit, steps_per_epoch

log = logging.getLogger(__name__)

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


def checkpoint_path(path: str) -> Path:
    """Relative checkpoint paths resolve against the launch directory."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(path))


def load_checkpoint(path: str, arch: str, num_classes: int) -> nn.Module:
    """Build `arch` and load weights from `path`; only tensors load, never pickled code."""
    file = checkpoint_path(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"teacher.checkpoint={path} cannot be read as a weights-only PyTorch checkpoint "
            f"({_load_failure(file, exc)})."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    model = build_model(arch, num_classes)
    problem = _state_mismatch(state, model.state_dict(), num_classes)
    if problem is None:
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, ValueError) as exc:
            problem = str(exc).strip().splitlines()[0][:200]
    if problem is not None:
        raise ConfigError(
            f"teacher.checkpoint={path} does not fit teacher.arch={arch} with ways={num_classes} "
            f"classes: {problem}."
        )
    return model


def _load_failure(file: Path, exc: Exception) -> str:
    """torch.load's reasons, in a few words: its weights-only refusal is a page of advice."""
    if isinstance(exc, OSError):
        return str(exc)[:200]
    if not zipfile.is_zipfile(file):
        return "it is not a file written by torch.save"
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found:
        return (
            f"it pickles objects besides tensors ({found.group(1)}); save the model's "
            "state_dict() alone"
        )
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"\x1b\[[0-9;]*m", "", first)[:200]


def _state_mismatch(state: object, expected: dict, num_classes: int) -> str | None:
    """Say why a loaded object is not `expected`'s state dict: another type, architecture or
    class count; torch's own message names only the first key, without the cause."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict of weights"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = f"{missing[0]!r} missing" if missing else f"{unexpected[0]!r} unexpected"
        return (
            f"{len(missing)} missing and {len(unexpected)} unexpected weight names (e.g. "
            f"{example}); it was saved from another architecture"
        )
    for key, want in expected.items():
        got = getattr(state[key], "shape", None)
        if got is None:
            return f"{key!r} is a {type(state[key]).__name__}, not a tensor"
        if tuple(got) != tuple(want.shape):
            head = len(want.shape) >= 1 and want.shape[0] == num_classes and len(got) >= 1
            if head and tuple(got[1:]) == tuple(want.shape[1:]):
                return f"its head {key!r} has {got[0]} classes; use a matching checkpoint or ways"
            return f"{key!r} has shape {tuple(got)} in the checkpoint, {tuple(want.shape)} here"
    return None


def teacher_key(cfg: DictConfig, dataset: ImageDataset, episode: Episode, augment: dict) -> str:
    """Everything that changes the trained weights; not the device (results are equivalent)."""
    hparams = {k: cfg[k] for k in TRAINING_KEYS}
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


def prepare_teacher(
    cfg: DictConfig,
    augment: DictConfig,
    dataset: ImageDataset,
    episode: Episode,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
) -> TeacherResult:
    ways = episode.ways
    if cfg.checkpoint:
        model = runtime.place(load_checkpoint(cfg.checkpoint, cfg.arch, ways))
        identity = digest(
            {"checkpoint": file_digest(checkpoint_path(cfg.checkpoint)), "arch": cfg.arch}
        )
        log.info("teacher: loaded %s from %s", cfg.arch, cfg.checkpoint)
        return TeacherResult(model, identity, "checkpoint")
    key = teacher_key(cfg, dataset, episode, OmegaConf.to_container(augment))
    start = time.perf_counter()
    checkpoint = TrainingCheckpoint(cache, key, cfg.checkpoint_every, cfg.resume, "teacher")
    entry, hit = cache.get_or_build(
        "teacher",
        key,
        lambda: _train(cfg, augment, dataset, episode, normalize, runtime, checkpoint),
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
    cfg: DictConfig,
    augment: DictConfig,
    dataset: ImageDataset,
    episode: Episode,
    normalize: Normalize,
    runtime: Runtime,
    checkpoint: TrainingCheckpoint | None = None,
) -> dict:
    """Train on every training image of the episode's classes, resuming from and saving to
    `checkpoint`; returns the cache entry."""
    torch.manual_seed(cfg.seed)
    model = runtime.place(build_model(cfg.arch, episode.ways))
    images = dataset.train.images[episode.teacher_indices].to(runtime.device)
    labels = episode.teacher_labels.to(runtime.device)
    steps = cfg.epochs * steps_per_epoch(len(images), min(cfg.batch_size, len(images)))
    log.info("teacher: training %s on %d images for %d epochs", cfg.arch, len(images), cfg.epochs)
    train_set = AugmentedSet(
        images, {"labels": labels}, normalize, augment.crop_padding, augment.flip
    )
    history = fit(
        model,
        train_set,
        build_loss(OmegaConf.create({"name": "ce"}), cfg.label_smoothing),
        Schedule(steps, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip),
        runtime,
        seed=cfg.seed,
        stage="teacher",
        checkpoint=checkpoint,
    )
    return {"state_dict": cpu_state_dict(model), "arch": cfg.arch, "history": history}
