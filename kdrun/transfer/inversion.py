"""transfer=inversion: DeepInversion (Yin et al. 2020) seeded from the shots. Each batch starts
from noisy crops of a shot of its target class (or from noise) and follows Adam on the pixels
to match the teacher's BatchNorm statistics, with cross-entropy to the target class, total
variation and L2 priors, random shifts and flips, and optionally the adaptive (ADI) term that
seeks images a proxy student still gets wrong."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.data.augment import crop_flip
from kdrun.episode_inputs import EpisodeInputs
from kdrun.errors import ConfigError
from kdrun.transfer.bn_stats import BatchNormStatistics, total_variation
from kdrun.transfer.proxy import ProxyStudent
from kdrun.transfer.registry import register_transfer
from kdrun.transfer.synthesis import (
    INF,
    Synthesis,
    balanced_targets,
    cosine,
    pixel_bounds,
    to_uint8,
)

INITS = ("shots", "noise")


@register_transfer("inversion")
class Inversion(Synthesis):
    ranges = {
        **Synthesis.ranges,
        "tv_weight": (0, INF, "weight of the total-variation prior"),
        "l2_weight": (0, INF, "weight of the L2 prior"),
        "init_noise": (0, INF, "std of the noise added to the starting shots"),
        "jitter": (0, 16, "random shift in pixels each step"),
    }

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.init not in INITS:
            raise ConfigError(
                f"transfer.init={cfg.init!r} is unknown; choose one of: {', '.join(INITS)} "
                "(start from noisy crops of the shots, or from noise)."
            )

    def start_images(
        self, targets: torch.Tensor, inputs: EpisodeInputs, gen: torch.Generator
    ) -> torch.Tensor:
        """Normalised starting images: a random crop/flip of a shot of each target class plus
        noise, or noise alone."""
        episode, dev = inputs.episode, inputs.runtime.device
        size = inputs.dataset.train.images.shape[-1]
        noise = torch.randn(len(targets), 3, size, size, generator=gen)
        if self.cfg.init == "noise":
            return noise.to(dev)
        shots = episode.shot_indices.view(episode.ways, -1)  # the sampler orders shots by class
        pick = torch.randint(0, shots.shape[1], (len(targets),), generator=gen)
        images = inputs.dataset.train.images[shots[targets, pick]]
        crops = crop_flip(images, inputs.augment.crop_padding, inputs.augment.flip, gen)
        return (inputs.normalize(crops.to(dev)) + self.cfg.init_noise * noise.to(dev)).contiguous()

    def make_batch(
        self,
        b: int,
        n: int,
        teacher: nn.Module,
        proxy: ProxyStudent | None,
        state: Any,
        inputs: EpisodeInputs,
    ) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, inputs.runtime.device
        gen = torch.Generator().manual_seed(self.batch_seed(inputs, b))
        targets = balanced_targets(n, inputs.episode.ways, gen, b * cfg.batch_size)
        low, high = pixel_bounds(inputs)
        x = torch.max(torch.min(self.start_images(targets, inputs, gen), high), low)
        x.requires_grad_(True)
        opt = torch.optim.Adam([x], lr=cfg.lr, betas=(0.5, 0.9))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine(s, cfg.steps))
        labels = targets.to(dev)
        with BatchNormStatistics(teacher) as bn:
            for _ in range(cfg.steps):
                shift = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
                view = torch.roll(x, shifts=shift, dims=(2, 3))
                if torch.rand((), generator=gen) < 0.5:
                    view = view.flip(3)
                logits = teacher(view)
                loss = (
                    cfg.ce_weight * F.cross_entropy(logits, labels)
                    + cfg.bn_weight * bn.pop()
                    + cfg.tv_weight * total_variation(view)
                    + cfg.l2_weight * torch.linalg.vector_norm(view)
                )
                if proxy is not None:
                    loss = loss - cfg.adversarial_weight * proxy.disagreement(view, logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    x.copy_(torch.max(torch.min(x, high), low))
        return {"images": to_uint8(x, inputs), "targets": targets}
