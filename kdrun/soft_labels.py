"""The teacher's logits for every image the student trains on, cached by content.

Logits, not probabilities, are stored: the temperature is applied at loss time, so a sweep over
it reuses one cache entry. The student stage reads these and never runs the teacher.
"""

from __future__ import annotations

import logging
import time

import torch

from kdrun.cache import ArtifactCache, digest, tensor_digest
from kdrun.data import ImageDataset
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import Episode
from kdrun.device import Runtime
from kdrun.teacher import TeacherResult
from kdrun.train import predict

log = logging.getLogger(__name__)


def soft_label_key(teacher_identity: str, dataset: ImageDataset, episode: Episode) -> str:
    return digest(
        {
            "kind": "soft_labels",
            "v": 1,
            "teacher": teacher_identity,
            "data": dataset.identity,
            "classes": episode.classes,
            "indices": tensor_digest(episode.shot_indices),
            "view": "clean",  # logits of the un-augmented images
        }
    )


def get_soft_labels(
    teacher: TeacherResult,
    dataset: ImageDataset,
    episode: Episode,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
    batch_size: int,
) -> tuple[torch.Tensor, float]:
    """Float32 logits (shots·ways, ways) aligned with `episode.shot_indices`, and seconds spent."""
    key = soft_label_key(teacher.identity, dataset, episode)
    entry = cache.load("soft_labels", key)
    cache.record("soft_labels", entry is not None)
    if entry is not None:
        log.info("soft labels: cache hit (%d images, nothing recomputed)", len(entry["logits"]))
        return entry["logits"].float(), 0.0
    start = time.perf_counter()
    images = dataset.train.images[episode.shot_indices]
    logits = predict(teacher.model, images, normalize, runtime, batch_size)
    cache.save("soft_labels", key, {"logits": logits, "indices": episode.shot_indices})
    seconds = time.perf_counter() - start
    log.info("soft labels: computed and cached for %d images in %.2fs", len(logits), seconds)
    return logits, seconds
