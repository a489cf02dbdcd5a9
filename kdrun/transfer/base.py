"""What every transfer source is: a check (run by preflight) and a `make` that returns the
images it adds to the shots, cached, or an online source the student stage runs in its loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.episode_inputs import EpisodeInputs
from kdrun.errors import ConfigError
from kdrun.store.cache import digest, tensor_digest


@dataclass
class TransferSet:
    """Images a transfer made beyond the shots (uint8, unlabelled for the student), or none."""

    method: str
    images: torch.Tensor | None = None  # (M, C, H, W) uint8
    targets: torch.Tensor | None = None  # the class each image was made for (pictures only)
    key: str = ""  # cache identity of `images`: soft labels of them extend their key with it
    hit: bool = False
    seconds: float = 0.0
    online: bool = False  # mix: the teacher labels each step's inputs inside the student's loop
    training_set: Any = None  # online: the student's TrainingSet (the teacher inside it)

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def describe(self) -> dict:
        """What metrics.json records of it."""
        return {
            "method": self.method,
            "images": len(self),
            "online": self.online,
            "hit": self.hit,
            "seconds": round(self.seconds, 3),
            "key": self.key,
        }


class Transfer:
    """One source of distillation inputs; subclasses register with @register_transfer."""

    name: ClassVar[str] = ""
    schema: ClassVar[type] = object
    online: ClassVar[bool] = False  # the teacher runs in the student's loop
    needs_batchnorm: ClassVar[bool] = False  # inverts the teacher's BatchNorm statistics
    uses_pool: ClassVar[bool] = False  # draws real unlabelled images (`pool`)
    ranges: ClassVar[dict[str, tuple]] = {}  # key -> (lowest, highest, why), both inclusive

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Refuse values out of range, before any work, naming the key and what is allowed."""
        for key, (low, high, meaning) in cls.ranges.items():
            value = cfg[key]
            if not (low <= value <= high):
                allowed = f">= {low}" if high == float("inf") else f"between {low} and {high}"
                raise ConfigError(
                    f"transfer.{key}={value} is invalid for transfer={cls.name}: it must be "
                    f"{allowed} ({meaning})."
                )

    def check_teacher(self, teacher: nn.Module, arch: str) -> None:
        """Refuse a teacher this source cannot use, in one paragraph saying what to use."""
        if self.needs_batchnorm and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in teacher.modules()
        ):
            raise ConfigError(
                f"transfer={self.name} inverts the teacher's BatchNorm statistics, but "
                f"teacher.arch={arch} has no BatchNorm layer, so there is nothing to match. "
                "Use a teacher with BatchNorm (teacher=fast, teacher=resnet20, resnet8x4, "
                "resnet32x4 or torchvision), or transfer=mix, which needs only the teacher's "
                "logits and works with any teacher."
            )

    def key(self, teacher_identity: str, inputs: EpisodeInputs, **extra: object) -> str:
        """Everything that changes the images: the teacher, the shots, the method, its
        parameters and the seed; not the device."""
        episode = inputs.episode
        return digest(
            {
                "kind": "transfer",
                "v": 1,
                "method": self.name,
                "params": OmegaConf.to_container(self.cfg, resolve=True),
                "teacher": teacher_identity,
                "data": inputs.dataset.identity,
                "classes": episode.classes,
                "shots": tensor_digest(episode.shot_indices),
                "seed": episode.seed,
                **extra,
            }
        )

    def make(
        self, teacher: nn.Module, teacher_identity: str, inputs: EpisodeInputs, **kw: Any
    ) -> TransferSet:
        """The images this source adds to the shots; real-image sources add none here (the
        sampler drew the pool)."""
        return TransferSet(self.name)
