"""Cross-entropy on the labels: the no-distillation baseline, the teacher's loss, KD's CE term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from kdrun.losses.registry import register_loss


def label_cross_entropy(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
) -> torch.Tensor:
    """CE against label distributions, averaged over the labelled images only.

    Unlabelled images (label -1, e.g. a transfer pool) add nothing; mixed views carry mixed label
    distributions in `label_dist`; label smoothing spreads each row's mass over all classes.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    if "label_dist" in batch:
        target = batch["label_dist"]
    else:
        labels = batch["labels"]
        target = torch.zeros_like(log_p)
        known = labels >= 0
        target[known] = F.one_hot(labels[known], logits.shape[1]).float()
    weight = target.sum(1, keepdim=True)
    if label_smoothing:
        target = target * (1 - label_smoothing) + weight * label_smoothing / logits.shape[1]
    return -(target * log_p).sum() / weight.sum().clamp_min(1.0)


@register_loss("ce")
class CrossEntropy:
    needs_teacher = False

    def __init__(self, cfg: DictConfig | None = None, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"ce": label_cross_entropy(logits, batch, self.label_smoothing)}
