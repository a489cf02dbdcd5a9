"""Loss registry: each method is one small file with a `Distiller`; its `loss.*` keys are its
schema in kdrun.config.LOSS_SCHEMAS (torch-free, so composing a config imports no torch)."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from kdrun.config import LOSS_SCHEMAS
from kdrun.losses.base import Distiller

LOSSES: dict[str, type[Distiller]] = {}


def register_loss(name: str) -> Callable[[type], type]:
    """Register a Distiller class under `name`; LOSS_SCHEMAS[name] types its `loss.*` keys."""

    def wrap(cls: type[Distiller]) -> type[Distiller]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        if name not in LOSS_SCHEMAS:
            raise ValueError(f"loss {name!r} has no parameter schema in kdrun.config.LOSS_SCHEMAS")
        cls.name, cls.schema = name, LOSS_SCHEMAS[name]
        LOSSES[name] = cls
        return cls

    return wrap


def loss_params(cfg: DictConfig) -> DictConfig:
    """`cfg` over the method's schema defaults, so `{"name": "dkd"}` alone is a full config."""
    return OmegaConf.merge(OmegaConf.structured(LOSSES[cfg.name].schema), cfg)


def build_loss(cfg: DictConfig, label_smoothing: float = 0.0) -> Distiller:
    """Instantiate the method named by `cfg.name`; label smoothing applies to its CE term."""
    return LOSSES[cfg.name](loss_params(cfg), label_smoothing)
