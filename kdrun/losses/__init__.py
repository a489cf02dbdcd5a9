"""Distillation methods: a registry plus one small file per method (see `base.Distiller`)."""

from kdrun.losses import at, ce, dist, dkd, fitnet, kd, rkd  # noqa: F401  (register them)
from kdrun.losses.base import Distiller
from kdrun.losses.registry import LOSSES, build_loss, loss_params, register_loss

__all__ = ["LOSSES", "Distiller", "build_loss", "loss_params", "register_loss"]
