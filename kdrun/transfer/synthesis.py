"""What inversion and the generator share: images made batch by batch from the teacher, each
batch a checksummed, locked cache entry (the unit a killed synthesis resumes from), an optional
proxy student as adversary, and a progress bar with an ETA."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from kdrun.episode_inputs import EpisodeInputs
from kdrun.runtime.progress import progress
from kdrun.store.cache import digest
from kdrun.transfer.base import Transfer, TransferSet
from kdrun.transfer.proxy import ProxyStudent

INF = float("inf")


@contextmanager
def frozen(model: nn.Module):
    """Eval mode and no weight gradients: synthesis differentiates through the teacher only."""
    was = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), was, strict=True):
            p.requires_grad_(flag)


def to_uint8(x: torch.Tensor, inputs: EpisodeInputs) -> torch.Tensor:
    """Normalised float images back to the uint8 pixels every other stage reads."""
    norm = inputs.normalize
    pixels = (x.detach() * norm.std + norm.mean) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).cpu()


def pixel_bounds(inputs: EpisodeInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values of pixel 0 and 255, per channel: what a synthesised image may hold."""
    norm = inputs.normalize
    return (0 - norm.mean) / norm.std, (1 - norm.mean) / norm.std


def balanced_targets(n: int, ways: int, gen: torch.Generator, first: int = 0) -> torch.Tensor:
    """Target classes of images first..first+n-1 of the set: the whole set cycles through the
    classes, so it is as even as its size allows; each batch in a seeded order."""
    return ((torch.arange(n) + first) % ways)[torch.randperm(n, generator=gen)]


class Synthesis(Transfer):
    """Batches of `transfer.batch_size` images until `transfer.images` exist."""

    needs_batchnorm = True
    ranges: ClassVar[dict[str, tuple]] = {
        "images": (1, 10**7, "images to synthesise"),
        "batch_size": (2, 100_000, "images made together; BatchNorm statistics need >= 2"),
        "steps": (1, 10**6, "optimisation steps per batch"),
        "lr": (1e-12, INF, "the optimiser's step size"),
        "bn_weight": (0, INF, "weight of the BatchNorm-statistics term"),
        "ce_weight": (0, INF, "weight of the cross-entropy to the target class"),
        "adversarial_weight": (0, INF, "weight of the student-teacher disagreement term"),
        "proxy_steps": (0, 10**6, "proxy-student steps after each batch"),
    }

    def batch_seed(self, inputs: EpisodeInputs, b: int) -> int:
        return inputs.episode.seed * 1_000_003 + b

    def start(self, inputs: EpisodeInputs) -> Any:
        """State carried from batch to batch (the generator); None when batches are independent."""
        return None

    def resume(self, state: Any, entry: dict) -> None:
        """Restore the carried state a cached batch ended with."""

    def make_batch(
        self,
        b: int,
        n: int,
        teacher: nn.Module,
        proxy: ProxyStudent | None,
        state: Any,
        inputs: EpisodeInputs,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def make(
        self, teacher: nn.Module, teacher_identity: str, inputs: EpisodeInputs, **kw: Any
    ) -> TransferSet:
        cfg, episode, runtime = self.cfg, inputs.episode, inputs.runtime
        adversarial = cfg.adversarial_weight > 0
        student_arch = kw.get("student_arch", "")
        key = self.key(teacher_identity, inputs, **({"proxy": student_arch} if adversarial else {}))
        teacher = teacher.to(runtime.device)
        sizes = [cfg.batch_size] * (cfg.images // cfg.batch_size)
        if cfg.images % cfg.batch_size:
            sizes.append(cfg.images % cfg.batch_size)
        start = time.perf_counter()
        images, targets, hits = [], [], []
        with frozen(teacher), progress("synthesis", cfg.images, "image") as meter:
            proxy = None
            if adversarial:
                shots = inputs.dataset.train.images[episode.shot_indices]
                proxy = ProxyStudent(
                    student_arch,
                    episode.ways,
                    teacher,
                    shots,
                    inputs.normalize,
                    runtime,
                    self.batch_seed(inputs, -1),
                    cfg.proxy_steps,
                    inputs.augment.crop_padding,
                )
            state = self.start(inputs)
            for b, n in enumerate(sizes):

                def build(b: int = b, n: int = n) -> dict[str, torch.Tensor]:
                    return self.make_batch(b, n, teacher, proxy, state, inputs)

                batch_key = digest({"kind": "transfer_batch", "of": key, "batch": b})
                entry, hit = inputs.cache.get_or_build("transfer_batch", batch_key, build)
                if hit:
                    self.resume(state, entry)
                if proxy is not None:
                    proxy.learn(entry["images"])
                images.append(entry["images"])
                targets.append(entry["targets"])
                hits.append(hit)
                meter.advance(n)
        seconds = 0.0 if all(hits) else time.perf_counter() - start
        return TransferSet(
            self.name, torch.cat(images), torch.cat(targets), key, all(hits), seconds
        )


def cosine(step: int, steps: int) -> float:
    """The learning-rate factor at `step` of `steps`: cosine decay to zero."""
    return 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
