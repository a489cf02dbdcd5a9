"""Decoupled KD (Zhao et al., CVPR 2022): KD split into a target-class part (TCKD, binary
target-vs-rest) and a non-target part (NCKD, the distribution over the other classes), weighted
alpha and beta independently: CE + min(1, progress/warmup)·(alpha·TCKD + beta·NCKD), each ·T².

The "target" of an unlabelled pool image is the teacher's top class: the split needs one, and
the pool's true labels are never shown to the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrun.losses.base import Distiller
from kdrun.losses.checks import ABOVE_ZERO, AT_LEAST_ZERO, ZERO_TO_ONE
from kdrun.losses.registry import register_loss


def _binary_kl(p_t: torch.Tensor, p_s: torch.Tensor) -> torch.Tensor:
    """KL between (p, 1-p) pairs, summed over the batch; clamped like the reference code."""
    b_t = torch.stack([p_t, 1 - p_t], dim=1).clamp_min(1e-12)
    b_s = torch.stack([p_s, 1 - p_s], dim=1).clamp_min(1e-12)
    return (b_t * (b_t.log() - b_s.log())).sum()


def dkd_terms(
    student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each T²·KL averaged over the batch."""
    t = temperature
    gt = F.one_hot(target, student.shape[1]).bool()
    p_s = F.softmax(student.float() / t, dim=1)
    p_t = F.softmax(teacher.float() / t, dim=1)
    tckd = _binary_kl(p_t[gt], p_s[gt]) / len(student) * t**2
    # Non-target classes only: mask the target logit out before the softmax.
    masked_s = (student.float() / t).masked_fill(gt, float("-inf"))
    masked_t = (teacher.float() / t).masked_fill(gt, float("-inf"))
    if student.shape[1] < 2:  # one class: there is no non-target distribution
        return tckd, torch.zeros_like(tckd)
    q_t = F.softmax(masked_t, dim=1)
    log_q_t = F.log_softmax(masked_t, dim=1).masked_fill(gt, 0.0)
    log_q_s = F.log_softmax(masked_s, dim=1).masked_fill(gt, 0.0)
    nckd = (q_t * (log_q_t - log_q_s)).sum() / len(student) * t**2
    return tckd, nckd


@register_loss("dkd")
class DecoupledKD(Distiller):
    ranges = {
        "ce_weight": AT_LEAST_ZERO,
        "alpha": AT_LEAST_ZERO,
        "beta": AT_LEAST_ZERO,
        "temperature": ABOVE_ZERO,
        "warmup": ZERO_TO_ONE,
    }

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        teacher = batch["teacher_logits"]
        labels = batch["labels"]
        target = torch.where(labels >= 0, labels, teacher.argmax(1))
        tckd, nckd = dkd_terms(logits, teacher, target, self.cfg.temperature)
        ramp = min(1.0, progress / self.cfg.warmup) if self.cfg.warmup > 0 else 1.0
        return {
            "ce": self.cfg.ce_weight * self.ce(logits, batch),
            "tckd": ramp * self.cfg.alpha * tckd,
            "nckd": ramp * self.cfg.beta * nckd,
        }
