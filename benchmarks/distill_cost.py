"""Cost of distillation per student step: cached soft labels vs CE only vs running the teacher
online, interleaved. Targets: cached KD ≥ 0.9× the speed of CE-only training; cached faster than
an online teacher (> 1), each judged by its 95% interval."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from benchmarks.common import Target, cifar_sized, compare, cpu_runtime
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit

STEPS, BATCH, STUDENT, TEACHER = 14, 64, "cnn_small", "cnn_large"
KD = OmegaConf.create({"name": "kd", "alpha": 0.9, "temperature": 4.0})


class OnlineTeacherSet(AugmentedSet):
    """What a runner without a cache does: a teacher forward pass on every student batch."""

    teacher: torch.nn.Module | None = None

    def batch(self, idx, gen):
        x, targets = super().batch(idx, gen)
        with torch.inference_mode():
            targets["teacher_logits"] = self.teacher(x).clone()
        return x, targets


def student(train_set, loss) -> None:
    torch.manual_seed(0)
    fit(
        build_model(STUDENT, 10),
        train_set,
        loss,
        Schedule(STEPS, BATCH, 0.02),
        cpu_runtime(),
        seed=0,
        stage="bench",
    )


def main() -> None:
    images, labels, normalize = cifar_sized(5_000)
    teacher = build_model(TEACHER, 10).eval()
    logits = torch.randn(len(images), 10)  # cached soft labels: their values do not set the speed
    ce_set = AugmentedSet(images, {"labels": labels}, normalize, 4, True)
    cached = AugmentedSet(images, {"labels": labels, "teacher_logits": logits}, normalize, 4, True)
    online = OnlineTeacherSet(images, {"labels": labels}, normalize, 4, True)
    online.teacher = teacher
    ce = build_loss(OmegaConf.create({"name": "ce"}))
    compare(
        f"distillation from cached soft labels vs CE only ({STEPS} steps)",
        lambda: student(cached, build_loss(KD)),
        lambda: student(ce_set, ce),
        Target(">=", 0.9),
        labels=("cached KD", "CE only"),
    )
    compare(
        f"cached soft labels vs online {TEACHER} teacher ({STEPS} steps)",
        lambda: student(cached, build_loss(KD)),
        lambda: student(online, build_loss(KD)),
        Target(">", 1.0),
        labels=("cached KD", "online teacher KD"),
    )


if __name__ == "__main__":
    main()
