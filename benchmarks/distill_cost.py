"""Cost of distillation per student step: cached soft labels vs CE only vs running the teacher
online. Target: cached KD ≥ 0.9× the speed of CE-only training."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from benchmarks.common import cifar_sized, cpu_runtime, report, timed
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit, predict

STEPS, BATCH, STUDENT, TEACHER = 150, 64, "cnn_small", "cnn_large"
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
    logits = predict(teacher, images, normalize, cpu_runtime())
    ce_set = AugmentedSet(images, {"labels": labels}, normalize, 4, True)
    cached = AugmentedSet(images, {"labels": labels, "teacher_logits": logits}, normalize, 4, True)
    online = OnlineTeacherSet(images, {"labels": labels}, normalize, 4, True)
    online.teacher = teacher
    student(ce_set, build_loss(OmegaConf.create({"name": "ce"})))  # warm-up
    t_ce = timed(lambda: student(ce_set, build_loss(OmegaConf.create({"name": "ce"}))), 2)
    t_cached = timed(lambda: student(cached, build_loss(KD)), 2)
    t_online = timed(lambda: student(online, build_loss(KD)), 1)
    ratio = t_ce / t_cached
    report(
        "distillation from cached soft labels vs CE only",
        ratio,
        ">= 0.9",
        ratio >= 0.9,
        f"{STEPS} steps: CE {t_ce:.2f}s, cached KD {t_cached:.2f}s",
    )
    speedup = t_online / t_cached
    report(
        "cached soft labels vs online teacher",
        speedup,
        "> 1 (speed-up)",
        speedup > 1,
        f"online {TEACHER} teacher {t_online:.2f}s vs cached {t_cached:.2f}s",
    )


if __name__ == "__main__":
    main()
