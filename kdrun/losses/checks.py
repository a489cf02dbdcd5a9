"""Range checks for a method's parameters, declared as data on each Distiller class."""

from __future__ import annotations

from omegaconf import DictConfig

from kdrun.errors import ConfigError

Range = tuple[float | None, float | None, bool]  # (low, high, low inclusive); None: unbounded
AT_LEAST_ZERO: Range = (0, None, True)  # weights
ABOVE_ZERO: Range = (0, None, False)  # temperatures, exponents
ZERO_TO_ONE: Range = (0, 1, True)  # mixing weights, fractions of training


def check_params(cfg: DictConfig, ranges: dict[str, Range]) -> None:
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
