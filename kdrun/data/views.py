"""Training sets that turn batch indices into model inputs and targets.

`AugmentedSet` draws fresh crops and flips every step (teacher, baseline, fixed-teacher KD).
`ReplayedViews` replays views whose parameters were drawn once and labelled by the teacher, so
the student sees exactly the images the teacher labelled (consistent teaching, Beyer et al. 2022)
without running the teacher.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from kdrun.data.augment import Normalize, crop_flip, crop_flip_with
from kdrun.losses.base import teacher_feature_key


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label distributions for the CE term; rows of unlabelled images (label -1) are all zero."""
    known = labels >= 0
    out = torch.zeros(len(labels), num_classes, device=labels.device)
    out[known] = F.one_hot(labels[known], num_classes).float()
    return out


@dataclass
class AugmentedSet:
    """uint8 images with fresh random crop/flip per step; targets are indexed alongside."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    normalize: Normalize
    padding: int
    flip: bool

    def __len__(self) -> int:
        return len(self.images)

    def batch(
        self, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = crop_flip(self.images[idx], self.padding, self.flip, gen)
        return self.normalize(x), {k: v[idx] for k, v in self.targets.items()}


@dataclass
class ViewParams:
    """Everything needed to regenerate view v of image i exactly: tensors shaped (N, V)."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    partner: torch.Tensor  # index of the image mixed in (itself when no mixing)
    lam: torch.Tensor  # weight of image i in the mix (1 when no mixing)
    box: torch.Tensor  # (N, V, 4) cutmix box y0, y1, x0, x1 of the partner's patch
    mix: str = "none"  # decides the rendering path without a device-to-host sync

    TENSORS = ("dy", "dx", "flip", "partner", "lam", "box")

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors to store; `mix` is part of the cache key, so it is not stored."""
        return {k: getattr(self, k) for k in self.TENSORS}

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor], mix: str) -> ViewParams:
        return cls(**{k: d[k] for k in cls.TENSORS}, mix=mix)

    def to(self, device: torch.device) -> ViewParams:
        return ViewParams(**{k: v.to(device) for k, v in self.to_dict().items()}, mix=self.mix)


def sample_view_params(
    n: int, views: int, padding: int, flip: bool, mix: str, mix_alpha: float, size: int, seed: int
) -> ViewParams:
    """Draw the parameters of `views` views of each of `n` images from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n, views)
    dy = torch.randint(0, 2 * padding + 1, shape, generator=gen)
    dx = torch.randint(0, 2 * padding + 1, shape, generator=gen)
    flips = torch.rand(shape, generator=gen) < 0.5 if flip else torch.zeros(shape, dtype=torch.bool)
    partner = torch.arange(n)[:, None].expand(shape).clone()
    lam = torch.ones(shape)
    box = torch.zeros(*shape, 4, dtype=torch.int64)
    if mix != "none":
        partner = torch.randint(0, n, shape, generator=gen)
        rng = np.random.default_rng(seed)  # numpy's Beta sampler takes a seed; torch's does not
        lam = torch.from_numpy(rng.beta(mix_alpha, mix_alpha, shape)).float()
        if mix == "cutmix":
            box, lam = cutmix_boxes(lam, size, gen)
    return ViewParams(dy, dx, flips, partner, lam.float(), box, mix)


def cutmix_boxes(
    lam: torch.Tensor, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A box (y0, y1, x0, x1) covering about 1 - lam of each image, clipped to its edges, and
    the weight lam the clipped box really leaves to the image (CutMix, Yun et al. 2019)."""
    cut = (1 - lam).sqrt()
    ch, cw = (cut * size).round().long(), (cut * size).round().long()
    cy = torch.randint(0, size, lam.shape, generator=gen, device=gen.device)
    cx = torch.randint(0, size, lam.shape, generator=gen, device=gen.device)
    y0, y1 = (cy - ch // 2).clamp(0, size), (cy + (ch + 1) // 2).clamp(0, size)
    x0, x1 = (cx - cw // 2).clamp(0, size), (cx + (cw + 1) // 2).clamp(0, size)
    box = torch.stack([y0, y1, x0, x1], dim=-1)
    return box, 1 - ((y1 - y0) * (x1 - x0)).float() / (size * size)


def paste_boxes(x: torch.Tensor, other: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`x` with `other` pasted inside each image's box (B, 4): y0, y1, x0, x1."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (
        (ys >= box[:, 0, None, None])
        & (ys < box[:, 1, None, None])
        & (xs >= box[:, 2, None, None])
        & (xs < box[:, 3, None, None])
    )
    return torch.where(inside[:, None], other, x)


def render_views(
    images: torch.Tensor,
    idx: torch.Tensor,
    view: torch.Tensor,
    params: ViewParams,
    normalize: Normalize,
    padding: int,
) -> torch.Tensor:
    """The normalised float views (idx[k], view[k]); the same for the teacher and the student."""
    dy, dx, flip = params.dy[idx, view], params.dx[idx, view], params.flip[idx, view]
    x = normalize(crop_flip_with(images[idx], dy, dx, flip, padding))
    if params.mix == "none":
        return x
    partner = params.partner[idx, view]
    other = normalize(crop_flip_with(images[partner], dy, dx, flip, padding))
    if params.mix == "cutmix":  # paste the partner's patch
        return paste_boxes(x, other, params.box[idx, view])
    lam = params.lam[idx, view][:, None, None, None]
    return lam * x + (1 - lam) * other


def view_batches(
    images: torch.Tensor,
    params: ViewParams,
    view: int,
    normalize: Normalize,
    padding: int,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """View `view` of every image, in order and in batches: what the teacher is run on."""
    n = len(params.dy)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size), device=images.device)
        yield render_views(images, idx, torch.full_like(idx, view), params, normalize, padding)


@dataclass
class ReplayedViews:
    """Each step picks one stored view per image and pairs it with the teacher's logits for it."""

    images: torch.Tensor
    labels: torch.Tensor  # -1 for pool images, whose labels the student never sees
    params: ViewParams
    teacher_logits: torch.Tensor  # (N, V, classes)
    normalize: Normalize
    padding: int
    num_classes: int
    # Cached teacher features of the same views, (N, V, ...) per layer, for feature methods.
    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def views(self) -> int:
        """Stored views per image: a batch may draw an image more than once (train.fit)."""
        return self.teacher_logits.shape[1]

    def batch(
        self, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = self.views
        view = torch.randint(0, views, (len(idx),), generator=gen, device=idx.device)
        x = render_views(self.images, idx, view, self.params, self.normalize, self.padding)
        lam = self.params.lam[idx, view][:, None]
        partner = self.params.partner[idx, view]
        target = lam * one_hot_targets(self.labels[idx], self.num_classes) + (
            1 - lam
        ) * one_hot_targets(self.labels[partner], self.num_classes)
        return x, {
            "labels": self.labels[idx],
            "label_dist": target,
            "teacher_logits": self.teacher_logits[idx, view].float(),
            **{teacher_feature_key(k): v[idx, view] for k, v in self.teacher_features.items()},
        }
