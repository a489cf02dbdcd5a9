"""Cross-entropy on the labels alone: the no-distillation baseline and the teacher's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from kdrun.losses.registry import register_loss


@register_loss("ce")
class CrossEntropy:
    needs_teacher = False

    def __init__(self, cfg: DictConfig | None = None, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        return {"ce": ce}
