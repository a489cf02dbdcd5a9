"""Cross-entropy on the labels alone: the no-distillation baseline and the teacher's loss."""

from __future__ import annotations

import torch

from kdrun.losses.base import Distiller
from kdrun.losses.registry import register_loss


@register_loss("ce")
class CrossEntropy(Distiller):
    needs_teacher = False

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        return {"ce": self.ce(logits, batch)}
