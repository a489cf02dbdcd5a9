"""Teacher features for feature methods (fitnet, at, rkd): cached with the views, or online.

A feature method reads the teacher at named layers. When the student replays the teacher's
stored views (`soft_labels.views >= 1`), the teacher's targets for those exact views can be
computed once and cached like the logits; otherwise, or when they would not fit in
`soft_labels.feature_cache_mb`, the teacher runs on every student batch ("online").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.data.views import view_batches
from kdrun.episode_inputs import EpisodeInputs
from kdrun.losses import Distiller
from kdrun.losses.base import teacher_feature_key
from kdrun.losses.features import FeatureTap
from kdrun.runtime.device import Runtime
from kdrun.runtime.progress import progress
from kdrun.stages.soft_labels import SoftLabels
from kdrun.store.cache import digest

log = logging.getLogger(__name__)


@dataclass
class TeacherFeatures:
    mode: str  # "cache" or "online"
    nbytes: int  # size of the cached targets (or what caching them would have taken)
    targets: dict[str, torch.Tensor] | None = None  # fp16 (images, views, ...) when cached
    model: nn.Module | None = None  # the teacher, when online
    hit: bool = False
    seconds: float = 0.0

    def describe(self) -> dict:
        return {"mode": self.mode, "bytes": self.nbytes, "hit": self.hit}


@torch.no_grad()  # not inference_mode: online targets enter the student's autograd graph
def teacher_targets(
    model: nn.Module, distiller: Distiller, x: torch.Tensor, runtime: Runtime
) -> dict[str, torch.Tensor]:
    """The distiller's targets for one normalised batch, the teacher in eval mode."""
    model.eval()
    with FeatureTap(model, distiller.teacher_layers) as tap, runtime.autocast():
        model(x.contiguous(memory_format=torch.channels_last) if runtime.channels_last else x)
        return {k: v.float() for k, v in distiller.teacher_targets(tap.features).items()}


def _bytes_per_view(
    model: nn.Module, distiller: Distiller, sample: torch.Tensor, runtime: Runtime
) -> int:
    targets = teacher_targets(model, distiller, sample[:1].to(runtime.device), runtime)
    return sum(t[0].numel() * 2 for t in targets.values())  # stored as fp16


def _online_reason(cfg: DictConfig, mb: float) -> str | None:
    """Why the teacher must run online for this config; None when its targets get cached."""
    if cfg.features == "online":
        return "soft_labels.features=online"
    if not cfg.views:
        return "views=0: the student's crops are fresh every step, so the teacher must see them"
    if cfg.features == "auto" and mb > cfg.feature_cache_mb:
        return f"{mb:.1f} MB > soft_labels.feature_cache_mb={cfg.feature_cache_mb:g}"
    return None


def get_teacher_features(
    teacher_model: nn.Module,
    distiller: Distiller,
    soft: SoftLabels,
    cfg: DictConfig,
    inputs: EpisodeInputs,
) -> TeacherFeatures | None:
    """None when the method reads no teacher layer; else cached targets or the online teacher.
    `cfg` is `soft_labels`; the distiller has resolved its layers."""
    runtime, normalize, batch_size = inputs.runtime, inputs.normalize, inputs.eval_batch_size
    if not distiller.uses_features:
        return None
    padding = inputs.augment.crop_padding
    sample = normalize(inputs.dataset.train.images[:2].to(runtime.device))
    views = cfg.views
    nbytes = _bytes_per_view(teacher_model, distiller, sample, runtime) * len(soft.labels)
    nbytes *= max(1, views)
    mb = nbytes / 2**20
    layers = ", ".join(distiller.teacher_layers)
    why = _online_reason(cfg, mb)
    if why:
        log.info("teacher features (%s): online, the teacher runs every step (%s)", layers, why)
        return TeacherFeatures("online", nbytes, model=teacher_model)

    key = digest({"kind": "teacher_features", "v": 1, "soft": soft.key, **distiller.target_spec})
    start = time.perf_counter()

    def compute() -> dict:
        images = soft.images(inputs.dataset).to(runtime.device)
        params = soft.params.to(runtime.device)
        per_view = []
        with progress("features", len(images) * views, "image") as meter:
            for v in range(views):
                chunks = []
                for x in view_batches(images, params, v, normalize, padding, batch_size):
                    targets = teacher_targets(teacher_model, distiller, x, runtime)
                    chunks.append({k: t.half().cpu() for k, t in targets.items()})
                    meter.advance(len(x))  # the copy above waited for the batch
                per_view.append({k: torch.cat([c[k] for c in chunks]) for k in chunks[0]})
        return {"targets": {k: torch.stack([p[k] for p in per_view], dim=1) for k in per_view[0]}}

    entry, hit = inputs.cache.get_or_build("teacher_features", key, compute)
    seconds = 0.0 if hit else time.perf_counter() - start
    verb = "cache hit" if hit else f"computed in {seconds:.2f}s and cached"
    log.info(
        "teacher features (%s): %s, %.1f MB for %d images x %d views",
        layers,
        verb,
        mb,
        len(soft.labels),
        views,
    )
    return TeacherFeatures(
        "cache", nbytes, targets=dict(entry["targets"]), hit=hit, seconds=seconds
    )


@dataclass
class OnlineTeacher:
    """Wraps a training set: adds the teacher's targets for exactly the inputs of each batch."""

    inner: object
    model: nn.Module
    distiller: Distiller
    runtime: Runtime

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def views(self) -> int:
        return getattr(self.inner, "views", 1)

    def batch(
        self, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, targets = self.inner.batch(idx, gen)
        extra = teacher_targets(self.model, self.distiller, x, self.runtime)
        return x, targets | {teacher_feature_key(k): v for k, v in extra.items()}
