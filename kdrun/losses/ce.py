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
    if "label_dist" not in batch:  # hard labels: PyTorch's fused kernel, -1 ignored
        labels = batch["labels"]
        total = F.cross_entropy(
            logits.float(),
            labels,
            ignore_index=-1,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
        return total / (labels >= 0).sum().clamp_min(1)
    log_p = F.log_softmax(logits.float(), dim=1)
    target = batch["label_dist"]
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
