"""FitNets (Romero et al., ICLR 2015): regress the teacher's intermediate "hint" feature map
from the student's "guided" layer through a trainable regressor, CE + w·MSE(r(f_s), f_t).

Single-stage, with w = 100, as RepDistiller and mdistiller run it (the paper pre-trains the
guided layers in a first stage). Where spatial sizes differ the larger map is average-pooled
to the smaller one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.errors import ConfigError
from kdrun.losses.base import Distiller, teacher_feature
from kdrun.losses.checks import AT_LEAST_ZERO
from kdrun.losses.features import pool_to, probe_features, resolve_layers
from kdrun.losses.registry import register_loss


def regressor(in_shape: torch.Size, out_channels: int) -> nn.Module:
    """1x1 conv + BN + ReLU for maps (teacher hints are post-ReLU); linear for vectors."""
    if len(in_shape) == 4:
        return nn.Sequential(
            nn.Conv2d(in_shape[1], out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
    return nn.Linear(in_shape[1], out_channels)


@register_loss("fitnet")
class FitNet(Distiller):
    uses_features = True
    ranges = {"ce_weight": AT_LEAST_ZERO, "feature_weight": AT_LEAST_ZERO}

    def resolve(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor) -> None:
        (s_layer,) = resolve_layers(student, self.cfg.student_layer, "hint", "loss.student_layer")
        (t_layer,) = resolve_layers(teacher, self.cfg.teacher_layer, "hint", "loss.teacher_layer")
        self.student_layers, self.teacher_layers = (s_layer,), (t_layer,)
        s = probe_features(student, [s_layer], sample)[s_layer]
        t = probe_features(teacher, [t_layer], sample)[t_layer]
        if s.dim() != t.dim() or s.dim() not in (2, 4):
            raise ConfigError(
                f"loss=fitnet pairs {s_layer} {tuple(s.shape[1:])} with {t_layer} "
                f"{tuple(t.shape[1:])}: both must be feature maps or both vectors."
            )
        self.student_shape = s.shape
        self.size = min(s.shape[-1], t.shape[-1]) if s.dim() == 4 else None
        self.teacher_channels = t.shape[1]

    def bind(self, student: nn.Module) -> None:
        self.regressor = regressor(self.student_shape, self.teacher_channels)

    def teacher_targets(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        (layer,) = self.teacher_layers
        target = features[layer]
        return {layer: pool_to(target, self.size) if self.size else target}

    @property
    def target_spec(self) -> dict:
        return {**super().target_spec, "size": self.size}

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        guided = self.regressor(features[self.student_layers[0]].float())
        if self.size:
            guided = pool_to(guided, self.size)
        hint = teacher_feature(batch, self.teacher_layers[0])
        return {
            "ce": self.cfg.ce_weight * self.ce(logits, batch),
            "hint": self.cfg.feature_weight * F.mse_loss(guided, hint),
        }
