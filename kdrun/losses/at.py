"""Attention Transfer (Zagoruyko & Komodakis, ICLR 2017): match spatial attention maps
Q = mean_c |f_c|^p, each flattened and L2-normalised, at the end of each stage:
CE + beta/2 · sum_j mean((Q_s,j - Q_t,j)²), beta = 1000, p = 2 as in the authors' code.

Only the maps are cached (H·W values per image and stage instead of C·H·W), the larger map of a
pair is average-pooled to the smaller, and stages are paired from the deepest when their
numbers differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.errors import ConfigError
from kdrun.losses.base import Distiller, teacher_feature
from kdrun.losses.checks import ABOVE_ZERO, AT_LEAST_ZERO
from kdrun.losses.features import pool_to, probe_features, resolve_layers
from kdrun.losses.registry import register_loss


def attention_map(feature: torch.Tensor, p: float, size: int) -> torch.Tensor:
    """L2-normalised, flattened mean_c |f|^p of a map pooled to size x size."""
    f = pool_to(feature.float(), size)
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


@register_loss("at")
class AttentionTransfer(Distiller):
    uses_features = True
    ranges = {"ce_weight": AT_LEAST_ZERO, "beta": AT_LEAST_ZERO, "p": ABOVE_ZERO}

    def resolve(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor) -> None:
        s = resolve_layers(student, self.cfg.student_layers, "attention", "loss.student_layers")
        t = resolve_layers(teacher, self.cfg.teacher_layers, "attention", "loss.teacher_layers")
        n = min(len(s), len(t))
        self.student_layers, self.teacher_layers = s[-n:], t[-n:]
        s_maps = probe_features(student, self.student_layers, sample)
        t_maps = probe_features(teacher, self.teacher_layers, sample)
        self.sizes = []
        for s_name, t_name in zip(self.student_layers, self.teacher_layers, strict=True):
            if s_maps[s_name].dim() != 4 or t_maps[t_name].dim() != 4:
                raise ConfigError(
                    f"loss=at needs feature maps; {s_name} or {t_name} is not (B, C, H, W)."
                )
            self.sizes.append(min(s_maps[s_name].shape[-1], t_maps[t_name].shape[-1]))

    def teacher_targets(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            name: attention_map(features[name], self.cfg.p, size)
            for name, size in zip(self.teacher_layers, self.sizes, strict=True)
        }

    @property
    def target_spec(self) -> dict:
        return {**super().target_spec, "p": self.cfg.p, "sizes": self.sizes}

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        pairs = zip(self.student_layers, self.teacher_layers, self.sizes, strict=True)
        at = sum(
            (attention_map(features[s], self.cfg.p, size) - teacher_feature(batch, t)).pow(2).mean()
            for s, t, size in pairs
        )
        return {
            "ce": self.cfg.ce_weight * self.ce(logits, batch),
            "at": self.cfg.beta / 2 * at,
        }
