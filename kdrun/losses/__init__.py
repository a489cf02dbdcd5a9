"""Distillation losses: a registry plus one small file per method."""

from kdrun.losses import ce, kd  # noqa: F401  (register the losses)
from kdrun.losses.registry import LOSSES, Loss, build_loss, register_loss

__all__ = ["LOSSES", "Loss", "build_loss", "register_loss"]
