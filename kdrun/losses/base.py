"""The shape every distillation method shares (after mdistiller's `Distiller`): student logits,
the batch and the student's named features in; a dict of named, already weighted loss terms out.

Feature methods also name the layers they read on both networks (`resolve`), may transform the
teacher's features into the compact targets that are cached or computed online
(`teacher_targets`), and may own trainable projections (`bind`), trained with the student.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.losses.checks import Range, check_params


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


class Distiller(nn.Module):
    name: ClassVar[str]
    schema: ClassVar[type]
    needs_teacher: ClassVar[bool] = True
    uses_features: ClassVar[bool] = False  # reads layers of the networks, not just logits
    ranges: ClassVar[dict[str, Range]] = {}  # key -> allowed range, checked by `check`

    def __init__(self, cfg: DictConfig, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.label_smoothing = label_smoothing
        self.student_layers: tuple[str, ...] = ()
        self.teacher_layers: tuple[str, ...] = ()

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Raise ConfigError naming `loss.<key>` for a value of the right type but out of range."""
        check_params(cfg, cls.ranges)

    def resolve(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor) -> None:
        """Pick the layers read on both networks and record their shapes; no parameters yet."""

    def bind(self, student: nn.Module) -> None:
        """Create projections for this student (after its weights were drawn, so the student's
        initialisation does not depend on the method)."""

    def teacher_targets(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the student is trained against, per teacher layer; also what gets cached."""
        return features

    @property
    def target_spec(self) -> dict:
        """Identifies `teacher_targets`' output in cache keys."""
        return {"method": self.name, "layers": list(self.teacher_layers)}

    def ce(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return label_cross_entropy(logits, batch, self.label_smoothing)

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms for one batch; `progress` is the fraction of training done (DKD's
        warm-up reads it)."""
        raise NotImplementedError


def teacher_feature_key(layer: str) -> str:
    """Where a batch carries the teacher's target for `layer`: the one spelling of that key."""
    return f"teacher_feat:{layer}"


def teacher_feature(batch: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    """The teacher's target for `layer` in this batch (cached or computed online)."""
    return batch[teacher_feature_key(layer)].float()
