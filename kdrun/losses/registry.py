"""Loss registry: each method is one small file that returns its named loss terms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from omegaconf import DictConfig


class Loss(Protocol):
    """Maps student logits and a batch (labels, maybe teacher logits) to named loss terms."""

    needs_teacher: bool

    def __call__(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]: ...


LossFactory = Callable[[DictConfig, float], Loss]
LOSSES: dict[str, LossFactory] = {}


def register_loss(name: str) -> Callable[[LossFactory], LossFactory]:
    def wrap(factory: LossFactory) -> LossFactory:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = factory
        return factory

    return wrap


def build_loss(cfg: DictConfig, label_smoothing: float = 0.0) -> Loss:
    """Instantiate the loss named by `cfg.name`; label smoothing applies to its CE term."""
    return LOSSES[cfg.name](cfg, label_smoothing)
