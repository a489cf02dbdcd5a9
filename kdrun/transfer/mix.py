"""transfer=mix: function matching on the shots (Beyer et al. 2022, "Knowledge distillation: a
good teacher is patient and consistent"). Every step draws fresh mixup or cutmix images of
cropped and flipped shots and the teacher labels exactly those, so the student never sees the
same input twice; the teacher runs in the loop, so nothing is cached."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kdrun.data.augment import Normalize, crop_flip
from kdrun.data.views import cutmix_boxes, one_hot_targets, paste_boxes
from kdrun.errors import ConfigError
from kdrun.runtime.device import Runtime
from kdrun.transfer.base import Transfer, TransferSet
from kdrun.transfer.registry import register_transfer
from kdrun.transfer.synthesis import to_uint8

MIX_KINDS = ("mixup", "cutmix", "both")


@register_transfer("mix")
class OnlineMix(Transfer):
    online = True
    ranges = {
        "mix_alpha": (1e-3, 1e3, "the Beta(a, a) parameter of the mixing weights"),
        "images": (1, 10**9, "mixes per pass of the student; student.epochs counts passes"),
    }

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.mix not in MIX_KINDS:
            raise ConfigError(
                f"transfer.mix={cfg.mix!r} is unknown; choose one of: {', '.join(MIX_KINDS)}."
            )

    def make(self, teacher: nn.Module, teacher_identity: str, inputs, **kw) -> TransferSet:
        return TransferSet(self.name, online=True)

    def training_set(self, teacher: nn.Module, inputs) -> OnlineMixes:
        """The student's inputs: mixes of the episode's shots, labelled by `teacher` per step."""
        episode, dev = inputs.episode, inputs.runtime.device
        return OnlineMixes(
            images=inputs.dataset.train.images[episode.shot_indices].to(dev),
            labels=episode.shot_labels.to(dev),
            teacher=teacher.to(dev).eval(),
            normalize=inputs.normalize,
            padding=inputs.augment.crop_padding,
            flip=inputs.augment.flip,
            mix=self.cfg.mix,
            alpha=self.cfg.mix_alpha,
            num_classes=episode.ways,
            runtime=inputs.runtime,
            length=int(self.cfg.images),
        )

    def sample(self, mixes: OnlineMixes, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """A picture's worth of mixes (uint8) and each one's larger class, from a fixed seed."""
        gen = torch.Generator(device=inputs.runtime.device).manual_seed(inputs.episode.seed)
        idx = torch.arange(10 * mixes.num_classes, device=inputs.runtime.device)
        x, targets = mixes.batch(idx, gen)
        return to_uint8(x, inputs), targets["label_dist"].argmax(1).cpu()


@dataclass
class OnlineMixes:
    """A TrainingSet of `length` fresh mixes per pass; batch indices only set the batch size."""

    images: torch.Tensor  # the shots, uint8, on the device
    labels: torch.Tensor
    teacher: nn.Module
    normalize: Normalize
    padding: int
    flip: bool
    mix: str
    alpha: float
    num_classes: int
    runtime: Runtime
    length: int

    def __len__(self) -> int:
        return self.length

    def batch(
        self, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n, dev = len(idx), idx.device
        a = torch.randint(0, len(self.images), (n,), generator=gen, device=dev)
        b = torch.randint(0, len(self.images), (n,), generator=gen, device=dev)
        x = self.normalize(crop_flip(self.images[a], self.padding, self.flip, gen))
        other = self.normalize(crop_flip(self.images[b], self.padding, self.flip, gen))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=dev))
        lam = torch.from_numpy(np.random.default_rng(seed).beta(self.alpha, self.alpha, n))
        lam = lam.float().to(dev)
        kind = self.mix
        if kind == "both":
            kind = "cutmix" if seed % 2 else "mixup"
        if kind == "cutmix":
            cpu = torch.Generator().manual_seed(seed)
            box, lam = cutmix_boxes(lam.cpu(), x.shape[-1], cpu)
            x, lam = paste_boxes(x, other, box.to(dev)), lam.to(dev)
        else:
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * other
        dist = lam[:, None] * one_hot_targets(self.labels[a], self.num_classes) + (
            1 - lam[:, None]
        ) * one_hot_targets(self.labels[b], self.num_classes)
        with torch.inference_mode(), self.runtime.autocast():
            teacher_logits = self.teacher(x).float()
        return x, {
            "labels": torch.full((n,), -1, dtype=torch.int64, device=dev),
            "label_dist": dist,
            "teacher_logits": teacher_logits.clone(),  # an inference tensor cannot enter autograd
        }
