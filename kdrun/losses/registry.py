"""Loss registry: each method is one small file with a parameter schema and a `Distiller`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kdrun.losses.base import Distiller


@dataclass
class LossSchema:
    """Fields every method has; a method's schema subclasses it with its own parameters."""

    name: str = MISSING


LOSSES: dict[str, type[Distiller]] = {}


def register_loss(name: str, schema: type = LossSchema) -> Callable[[type], type]:
    """Register a Distiller class under `name`, with the dataclass that types `loss.*`."""

    def wrap(cls: type[Distiller]) -> type[Distiller]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        cls.name, cls.schema = name, schema
        LOSSES[name] = cls
        return cls

    return wrap


def loss_params(cfg: DictConfig) -> DictConfig:
    """`cfg` over the method's schema defaults, so `{"name": "dkd"}` alone is a full config."""
    return OmegaConf.merge(OmegaConf.structured(LOSSES[cfg.name].schema), cfg)


def build_loss(cfg: DictConfig, label_smoothing: float = 0.0) -> Distiller:
    """Instantiate the method named by `cfg.name`; label smoothing applies to its CE term."""
    return LOSSES[cfg.name](loss_params(cfg), label_smoothing)


def store_loss_schemas(store: ConfigStore) -> None:
    """`conf/loss/<name>.yaml` extends `/schema/loss/<name>`: Hydra type-checks every loss key."""
    for name, cls in LOSSES.items():
        store.store(group="schema/loss", name=name, node=cls.schema)
