"""A proxy student trained alongside synthesis on what has been made so far (and the shots):
the adversary of DFAD/ZSKT's generator and of DeepInversion's adaptive (ADI) term, which seek
images where the student still disagrees with the teacher. It is replayed from the cached
batches on a re-run, so a resumed synthesis sees the same adversary as an uninterrupted one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.data.augment import Normalize, crop_flip
from kdrun.losses.kd import kd_divergence
from kdrun.models import build_model
from kdrun.runtime.device import Runtime

BATCH = 64
LR = 0.05


class ProxyStudent:
    def __init__(
        self,
        arch: str,
        ways: int,
        teacher: nn.Module,
        shots: torch.Tensor,
        normalize: Normalize,
        runtime: Runtime,
        seed: int,
        steps: int,
        padding: int,
    ) -> None:
        torch.manual_seed(seed)
        self.model = build_model(arch, ways).to(runtime.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=0.9, nesterov=True)
        self.teacher, self.normalize, self.steps, self.padding = teacher, normalize, steps, padding
        self.bank = [shots.to(runtime.device)]
        self.gen = torch.Generator(device=runtime.device).manual_seed(seed)

    def learn(self, images: torch.Tensor) -> None:
        """Add a finished batch (uint8) to the bank and take `steps` KD steps on the bank."""
        self.bank.append(images.to(self.bank[0].device))
        bank = torch.cat(self.bank)
        self.model.train()
        for _ in range(self.steps):
            idx = torch.randint(0, len(bank), (min(BATCH, len(bank)),), generator=self.gen)
            x = self.normalize(crop_flip(bank[idx.to(bank.device)], self.padding, True, self.gen))
            with torch.no_grad():
                target = self.teacher(x)
            loss = kd_divergence(self.model(x), target, 1.0)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def disagreement(self, x: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Jensen-Shannon divergence between the student's and the teacher's predictions on `x`,
        differentiable in `x` (the student's weights are not updated by it)."""
        self.model.eval()
        p = F.softmax(self.model(x), dim=1)
        q = F.softmax(teacher_logits, dim=1)
        m = (0.5 * (p + q)).clamp_min(1e-8).log()
        return 0.5 * (F.kl_div(m, p, reduction="batchmean") + F.kl_div(m, q, reduction="batchmean"))
