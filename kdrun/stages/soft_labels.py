"""The teacher's logits for every image the student distils on, cached by content.

The student distils on its shots plus an optional transfer pool (`pool` images per class whose
labels it never sees). With `soft_labels.views=0` the teacher labels each clean image once and
the student's augmented views reuse that label ("fixed teacher"); with V >= 1 the teacher labels
V augmented (optionally mixed) views per image whose parameters are stored with the logits, and
the student replays exactly those views. Logits, not probabilities, are stored (fp16): the
temperature is applied at loss time, so a sweep over it reuses one entry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from kdrun.data import ImageDataset
from kdrun.data.fewshot import Episode
from kdrun.data.views import ViewParams, sample_view_params, view_batches
from kdrun.episode_inputs import EpisodeInputs
from kdrun.errors import DivergedError
from kdrun.measure.finite import nonfinite_count
from kdrun.measure.label_quality import label_quality
from kdrun.runtime.progress import Meter, progress
from kdrun.stages.teacher import TeacherResult
from kdrun.store.cache import digest, tensor_digest
from kdrun.train import predict, predict_inputs
from kdrun.transfer import TransferSet

log = logging.getLogger(__name__)


@dataclass
class SoftLabels:
    indices: torch.Tensor  # train-split indices: the shots, then the pool
    labels: torch.Tensor  # shot labels, then -1 for pool images
    logits: torch.Tensor  # fp16, (M, classes) for clean images or (M, V, classes) for views
    params: ViewParams | None  # how to regenerate each view; None for clean images
    hit: bool
    seconds: float
    key: str = ""  # the cache key: teacher features of the same views extend it
    extra_images: torch.Tensor | None = None  # uint8 images a transfer made beyond the split
    quality: dict[str, float] | None = None  # the teacher scored on the labelled shots' views

    def images(self, dataset: ImageDataset) -> torch.Tensor:
        """The uint8 images these logits label, in order: split images, then made ones."""
        real = dataset.train.images[self.indices]
        return real if self.extra_images is None else torch.cat([real, self.extra_images])

    @property
    def nbytes(self) -> int:
        extra = (
            sum(t.numel() * t.element_size() for t in self.params.to_dict().values())
            if (self.params is not None)
            else 0
        )
        return self.logits.numel() * self.logits.element_size() + extra


def distillation_set(episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and student-visible labels of the images the student distils on."""
    pool = episode.pool_indices
    indices = torch.cat([episode.shot_indices, pool])
    labels = torch.cat([episode.shot_labels, torch.full((len(pool),), -1, dtype=torch.int64)])
    return indices, labels


def soft_label_key(
    teacher_identity: str, dataset: ImageDataset, episode: Episode, view: dict, made: str = ""
) -> str:
    """`made`: the cache key of images a transfer made (absent for real images alone, so the
    keys of pool and shots runs are those they always had)."""
    indices, _ = distillation_set(episode)
    return digest(
        {
            "kind": "soft_labels",
            "v": 2,
            "teacher": teacher_identity,
            "data": dataset.identity,
            "classes": episode.classes,
            "indices": tensor_digest(indices),
            "view": view,
            **({"made": made} if made else {}),
        }
    )


def get_soft_labels(
    teacher: TeacherResult,
    cfg: DictConfig,
    inputs: EpisodeInputs,
    made: TransferSet | None = None,
) -> SoftLabels:
    """Load the teacher's logits for this episode's distillation set (with the images a
    transfer `made`), or compute and store them; `cfg` is `soft_labels`."""
    dataset, episode, normalize, runtime = (
        inputs.dataset,
        inputs.episode,
        inputs.normalize,
        inputs.runtime,
    )
    augment, batch_size = inputs.augment, inputs.eval_batch_size
    indices, labels = distillation_set(episode)
    extra = made.images if made is not None and made.images is not None else None
    if extra is not None:
        labels = torch.cat([labels, torch.full((len(extra),), -1, dtype=torch.int64)])
    views = cfg.views
    view = {"views": views}
    if views:
        view |= {
            "mix": cfg.mix,
            "mix_alpha": cfg.mix_alpha,
            "seed": episode.seed,
            "padding": augment.crop_padding,
            "flip": augment.flip,
        }
    key = soft_label_key(
        teacher.identity, dataset, episode, view, made.key if extra is not None else ""
    )
    start = time.perf_counter()

    def label() -> dict:
        entry = _label()
        bad = nonfinite_count(entry["logits"])
        if bad:
            detail = f"{bad} of its soft-label logits are NaN or beyond float16's range"
            raise DivergedError("teacher", detail, "teacher")
        return entry

    def _label() -> dict:
        with progress("labelling", len(labels) * max(1, views), "image") as meter:
            return _label_views(meter)

    def _label_views(meter: Meter) -> dict:
        images = dataset.train.images[indices]
        if extra is not None:
            images = torch.cat([images, extra])
        images = images.to(runtime.device)
        if not views:
            logits = predict(teacher.model, images, normalize, runtime, batch_size, meter)
            return {"logits": logits.half(), "indices": indices}
        size = dataset.train.images.shape[-1]
        params = sample_view_params(
            len(labels),
            views,
            augment.crop_padding,
            augment.flip,
            cfg.mix,
            cfg.mix_alpha,
            size,
            episode.seed,
        )
        dev_params = params.to(runtime.device)
        pad = augment.crop_padding
        logits = torch.stack(
            [
                predict_inputs(
                    teacher.model,
                    view_batches(images, dev_params, v, normalize, pad, batch_size),
                    runtime,
                    meter,
                )
                for v in range(views)
            ],
            dim=1,
        )
        return {"logits": logits.half(), "indices": indices, "params": params.to_dict()}

    entry, hit = inputs.cache.get_or_build("soft_labels", key, label)
    params = ViewParams.from_dict(entry["params"], cfg.mix) if views else None
    seconds = 0.0 if hit else time.perf_counter() - start
    mixing = (params.partner, params.lam) if params is not None else (None, None)
    quality = label_quality(entry["logits"], labels, *mixing)
    result = SoftLabels(indices, labels, entry["logits"], params, hit, seconds, key, extra, quality)
    if hit:
        log.info(
            "soft labels: cache hit (%d images, %d bytes, nothing recomputed)",
            len(labels),
            result.nbytes,
        )
    else:
        log.info(
            "soft labels: teacher labelled %d images x %d view(s) in %.2fs (%d bytes cached)",
            len(labels),
            max(1, views),
            seconds,
            result.nbytes,
        )
    if quality is not None:
        log.info(
            "soft labels on the shots: the teacher's top class is the view's main class in"
            " %.1f%% of the %d labelled views, with %.2f of its probability on the classes in them",
            100 * quality["agrees"],
            quality["labelled"],
            quality["mass_on_content"],
        )
    return result
