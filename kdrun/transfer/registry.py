"""Transfer registry: one class per source, typed by kdrun.config.TRANSFER_SCHEMAS."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from kdrun.config import TRANSFER_SCHEMAS
from kdrun.transfer.base import Transfer

TRANSFERS: dict[str, type[Transfer]] = {}


def register_transfer(name: str) -> Callable[[type], type]:
    """Register a Transfer class under `name`; TRANSFER_SCHEMAS[name] types its keys."""

    def wrap(cls: type[Transfer]) -> type[Transfer]:
        if name in TRANSFERS:
            raise ValueError(f"transfer {name!r} is registered twice")
        if name not in TRANSFER_SCHEMAS:
            raise ValueError(f"transfer {name!r} has no schema in kdrun.config.TRANSFER_SCHEMAS")
        cls.name, cls.schema = name, TRANSFER_SCHEMAS[name]
        TRANSFERS[name] = cls
        return cls

    return wrap


def transfer_params(cfg: DictConfig) -> DictConfig:
    """`cfg` over its source's schema defaults, so `{"name": "inversion"}` is a full config."""
    return OmegaConf.merge(OmegaConf.structured(TRANSFERS[cfg.name].schema), cfg)


def build_transfer(cfg: DictConfig) -> Transfer:
    return TRANSFERS[cfg.name](transfer_params(cfg))
