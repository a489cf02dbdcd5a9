"""Range checks for a method's parameters, declared as data on each Distiller class."""

from __future__ import annotations

from omegaconf import DictConfig

from kdrun.config import ConfigError


def check_params(
    cfg: DictConfig, ranges: dict[str, tuple[float | None, float | None, bool]]
) -> None:
    for key, (low, high, low_inclusive) in ranges.items():
        value = cfg[key]
        too_low = low is not None and (value < low if low_inclusive else value <= low)
        too_high = high is not None and value > high
        if too_low or too_high:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            bracket = "[" if low_inclusive else "("
            raise ConfigError(
                f"loss.{key}={value} is invalid for loss={cfg.name}: it must be in "
                f"{bracket}{lo}, {hi}]."
            )
