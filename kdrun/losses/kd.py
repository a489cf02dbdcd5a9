"""Hinton et al. (2015): (1-a)·CE(labels) + a·T²·KL(teacher_T ‖ student_T).

T² keeps the soft term's gradient scale independent of the temperature, so alpha means the
same thing at every T. Temperature is applied here, at loss time, so cached logits serve any T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from kdrun.losses.ce import label_cross_entropy
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
class HintonKD:
    needs_teacher = True

    def __init__(self, cfg: DictConfig, label_smoothing: float = 0.0) -> None:
        self.alpha = float(cfg.alpha)
        self.temperature = float(cfg.temperature)
        self.label_smoothing = label_smoothing

    def __call__(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ce = label_cross_entropy(logits, batch, self.label_smoothing)
        kd = kd_divergence(logits, batch["teacher_logits"], self.temperature)
        return {"ce": (1 - self.alpha) * ce, "kd": self.alpha * kd}
