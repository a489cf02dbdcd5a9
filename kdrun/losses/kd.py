"""Hinton et al. (2015): (1-a)·CE(labels) + a·T²·KL(teacher_T ‖ student_T).

T² keeps the soft term's gradient scale independent of the temperature, so alpha means the
same thing at every T. Temperature is applied here, at loss time, so cached logits serve any T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrun.losses.base import Distiller
from kdrun.losses.checks import ABOVE_ZERO, ZERO_TO_ONE
from kdrun.losses.registry import register_loss


def kd_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


@register_loss("kd")
class HintonKD(Distiller):
    ranges = {"alpha": ZERO_TO_ONE, "temperature": ABOVE_ZERO}

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        alpha = self.cfg.alpha
        kd = kd_divergence(logits, batch["teacher_logits"], self.cfg.temperature)
        return {"ce": (1 - alpha) * self.ce(logits, batch), "kd": alpha * kd}
