"""DIST (Huang et al., NeurIPS 2022): match the teacher's prediction *relations*, not its exact
probabilities: 1 - Pearson correlation per image across classes (inter-class) and per class
across the batch (intra-class), on softmax(z/T), each ·T². Logits only, so it uses the cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrun.losses.base import Distiller
from kdrun.losses.checks import ABOVE_ZERO, AT_LEAST_ZERO
from kdrun.losses.registry import register_loss


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of `a` with the same row of `b`."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter, intra), each T²·(1 - mean Pearson correlation)."""
    y_s = F.softmax(student.float() / temperature, dim=1)
    y_t = F.softmax(teacher.float() / temperature, dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.T, y_t.T).mean()
    return inter * temperature**2, intra * temperature**2


@register_loss("dist")
class DIST(Distiller):
    ranges = {
        "ce_weight": AT_LEAST_ZERO,
        "beta": AT_LEAST_ZERO,
        "gamma": AT_LEAST_ZERO,
        "temperature": ABOVE_ZERO,
    }

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        inter, intra = dist_terms(logits, batch["teacher_logits"], self.cfg.temperature)
        return {
            "ce": self.cfg.ce_weight * self.ce(logits, batch),
            "inter": self.cfg.beta * inter,
            "intra": self.cfg.gamma * intra,
        }
