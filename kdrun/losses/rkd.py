"""Relational KD (Park et al., CVPR 2019): match the *structure* of the batch in embedding
space: pairwise distances (normalised by their mean) and the angles of triplets, each with the
Huber loss: CE + w_d·L_dist + w_a·L_angle (w_d = 25, w_a = 50 as in RepDistiller/mdistiller).
Relations need no projection, so student and teacher widths may differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.losses.base import Distiller, teacher_feature
from kdrun.losses.checks import AT_LEAST_ZERO
from kdrun.losses.features import flat, resolve_layers
from kdrun.losses.registry import register_loss


def normalised_distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over distinct pairs."""
    d = torch.cdist(e, e)
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return d / d[off_diagonal].mean().clamp_min(1e-12)


def angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j between i and k, for every triplet (i, j, k): (B, B, B)."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], dim=2)  # diff[j, i] = unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_terms(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, angle) Huber losses between the batch's relations in the two spaces."""
    s, t = flat(student), flat(teacher)
    distance = F.smooth_l1_loss(normalised_distances(s), normalised_distances(t))
    angle = F.smooth_l1_loss(angles(s), angles(t))
    return distance, angle


@register_loss("rkd")
class RelationalKD(Distiller):
    uses_features = True
    ranges = {
        "ce_weight": AT_LEAST_ZERO,
        "distance_weight": AT_LEAST_ZERO,
        "angle_weight": AT_LEAST_ZERO,
    }

    def resolve(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor) -> None:
        s = resolve_layers(student, self.cfg.student_layer, "embedding", "loss.student_layer")
        t = resolve_layers(teacher, self.cfg.teacher_layer, "embedding", "loss.teacher_layer")
        self.student_layers, self.teacher_layers = s[:1], t[:1]

    def teacher_targets(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: flat(f) for name, f in features.items()}

    def forward(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        student = features[self.student_layers[0]]
        teacher = teacher_feature(batch, self.teacher_layers[0])
        distance, angle = rkd_terms(student, teacher)
        return {
            "ce": self.cfg.ce_weight * self.ce(logits, batch),
            "rkd_distance": self.cfg.distance_weight * distance,
            "rkd_angle": self.cfg.angle_weight * angle,
        }
