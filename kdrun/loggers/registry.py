"""Logger registry: each tracker is one file registering a RunLogger under its option name,
with the package it imports and the extra that installs it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from kdrun.errors import ConfigError
from kdrun.loggers.base import RunLogger


@dataclass(frozen=True)
class LoggerEntry:
    cls: type[RunLogger]
    package: str  # the library, as a user knows it
    modules: tuple[str, ...]  # what `import` must find
    extra: str  # pip install 'kdrun[<extra>]'


LOGGERS: dict[str, LoggerEntry] = {}


def register_logger(
    name: str, package: str, modules: tuple[str, ...], extra: str
) -> Callable[[type], type]:
    def wrap(cls: type[RunLogger]) -> type[RunLogger]:
        if name in LOGGERS:
            raise ValueError(f"logger {name!r} is registered twice")
        LOGGERS[name] = LoggerEntry(cls, package, modules, extra)
        return cls

    return wrap


def logger_names() -> list[str]:
    return ["none", *sorted(LOGGERS)]


def check_logger(name: str) -> None:
    """Preflight: the option exists and its library imports (it is an optional extra)."""
    if name == "none":
        return
    if name not in LOGGERS:
        raise ConfigError(
            f"logger.name={name!r} is unknown; choose one of: {', '.join(logger_names())}."
        )
    entry = LOGGERS[name]
    try:
        for module in entry.modules:
            importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"logger={name} needs the {entry.package} package, which is not installed: "
            f"pip install 'kdrun[{entry.extra}]'"
        ) from None
