"""A misspelt key on the command line (`studnet.steps=10`): one paragraph naming the nearest
real key, before Hydra, whose own advice ("use +studnet.steps=10") kdrun would then refuse."""

from __future__ import annotations

import difflib
import itertools
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from kdrun.config import (
    DATA_SCHEMAS,
    LOGGER_SCHEMAS,
    LOSS_SCHEMAS,
    TRANSFER_SCHEMAS,
    Config,
    DataConf,
    LoggerConf,
    LossSchema,
    TransferSchema,
)

# Groups whose options bring keys of their own: `loss.alpha` is a key of some options only.
OPTION_SCHEMAS: dict[str, dict[str, type]] = {
    "data": DATA_SCHEMAS,
    "loss": LOSS_SCHEMAS,
    "logger": LOGGER_SCHEMAS,
    "transfer": TRANSFER_SCHEMAS,
}
BASE_SCHEMAS: dict[str, type] = {
    "data": DataConf,
    "loss": LossSchema,
    "logger": LoggerConf,
    "transfer": TransferSchema,
}
MAX_COMPOSITIONS = 16  # a sweep over group options is checked for every combination, up to this


def schema_keys(schema: type, prefix: str = "") -> Iterator[str]:
    """Every dotted key (inner nodes too) of a schema dataclass."""
    for name, hint in typing.get_type_hints(schema).items():
        yield prefix + name
        if is_dataclass(hint):
            yield from schema_keys(hint, f"{prefix}{name}.")


def always_keys() -> set[str]:
    """Keys valid whatever the options: the schema's, each option group's common base, and
    the groups kdrun ships (`experiment=smoke`)."""
    keys = set(schema_keys(Config))
    for group, base in BASE_SCHEMAS.items():
        keys |= set(schema_keys(base, f"{group}."))
    conf = resources.files("kdrun.conf")
    return keys | {p.name for p in conf.iterdir() if p.is_dir() and not p.name.startswith("_")}


def config_keys(cfg: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a composed config, inner nodes and list items included."""
    for key in cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg)):
        if not prefix and key == "hydra":
            continue  # Hydra's own settings: Hydra checks them
        node = cfg._get_node(key)
        yield f"{prefix}{key}"
        if isinstance(node, DictConfig | ListConfig):
            yield from config_keys(node, f"{prefix}{key}.")


def _parse(argv: Sequence[str]) -> tuple[Any, list] | None:
    """Hydra's own reading of the command line: its flags and its overrides, or None when
    Hydra will report the command line itself (a bad flag or override syntax)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = get_args_parser()

    def fail(message: str) -> None:
        raise ValueError(message)

    parser.error = fail  # type: ignore[method-assign]  # argparse would print and exit
    try:
        args = parser.parse_args(list(argv))
        return args, OverridesParser.create().parse_overrides(args.overrides)
    except Exception:
        return None


class _Composer:
    """Composes the config for given group choices, with the user's --config-dir if any."""

    def __init__(self, config_dir: str | None) -> None:
        self.searchpath = (
            [f"hydra.searchpath=[file://{Path(config_dir).absolute()}]"] if config_dir else []
        )

    def __enter__(self) -> _Composer:
        from hydra import initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        from kdrun.config import register_configs

        register_configs()
        self._init = initialize_config_module("kdrun.conf", version_base="1.3")
        self._init.__enter__()
        self.loader = GlobalHydra.instance().config_loader()
        return self

    def __exit__(self, *exc: object) -> None:
        self._init.__exit__(*exc)

    def groups(self) -> list[str]:
        return [g for g in self.loader.list_groups("") if g != "hydra"]

    def keys(self, choices: list[str]) -> tuple[set[str], dict[str, str]]:
        """The composed config's keys, and the option chosen in each group."""
        from hydra import compose

        overrides = [*choices, *self.searchpath]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        chosen = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items()}
        return set(config_keys(cfg)), chosen


def _choice_sets(overrides: list, groups: list[str]) -> list[list[str]] | None:
    """Every combination of the group options the command line picks (a sweep over
    `student=a,b` picks two), or None when there are too many to compose."""
    per_group = []
    for o in overrides:
        if o.key_or_group in groups and o.package is None and o.type.name == "CHANGE":
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            per_group.append([f"{o.key_or_group}={v}" for v in values])
    combos = list(itertools.islice(itertools.product(*per_group), MAX_COMPOSITIONS + 1))
    return None if len(combos) > MAX_COMPOSITIONS else [list(c) for c in combos]


def _owners(key: str) -> list[str]:
    """The options of a group whose own schema has `key` (`data.num_classes`: synthetic)."""
    group = key.split(".", 1)[0]
    return [
        f"{group}={option}"
        for option, schema in OPTION_SCHEMAS.get(group, {}).items()
        if key in set(schema_keys(schema, f"{group}."))
    ]


def typo_message(
    key: str, value: str, known: set[str], groups: list[str], chosen: dict[str, str]
) -> str:
    """One paragraph: the unknown key, the nearest real one (or the options that have it)."""
    owners = _owners(key)
    group = key.split(".", 1)[0]
    if owners:
        what = (
            f"{key} is a key of {' or '.join(owners)} only, not of {group}={chosen.get(group)}: "
            f"choose {'it' if len(owners) == 1 else 'one of them'} too."
        )
    else:
        near = difflib.get_close_matches(key, sorted(known | set(groups)), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}={value}?" if near else "no key is close to it."
        what = f"{key} is not a kdrun config key; {hint}"
    return (
        f"{key}={value}: {what} `kdrun --help` lists the groups and keys "
        "(docs/configuration.md explains them); kdrun has no other keys, so '+' does not help."
    )


def unknown_key_problem(argv: Sequence[str]) -> str | None:
    """The first override that sets a key no config of this command line has, as one
    paragraph; None when all are known or when Hydra should report the command line."""
    if any(flag in argv for flag in ("--version", "--shell-completion", "-sc")):
        return None
    parsed = _parse(argv)
    if parsed is None:
        return None
    args, overrides = parsed
    if args.config_path or args.config_name:  # another primary config: Hydra's to check
        return None
    known_everywhere = always_keys()
    suspects = [  # plain `key=value` (Hydra and kdrun check +, ++ and ~ themselves)
        o
        for o in overrides
        if o.type.name == "CHANGE"
        and o.package is None
        and not o.key_or_group.startswith(("hydra.", "hydra/"))
        and o.key_or_group not in known_everywhere
    ]
    if not suspects:
        return None  # the usual case: no composition needed
    try:
        with _Composer(args.config_dir) as composer:
            groups = composer.groups()
            suspects = [o for o in suspects if o.key_or_group not in groups]
            if not suspects:
                return None
            choice_sets = _choice_sets(overrides, groups)
            if choice_sets is None:
                return None
            for choices in choice_sets:  # every job of a sweep must have the key
                known, chosen = composer.keys(choices)
                for o in suspects:
                    if o.key_or_group not in known:
                        value = o.input_line.split("=", 1)[1]
                        return typo_message(o.key_or_group, value, known, groups, chosen)
    except Exception:  # a config Hydra cannot compose: Hydra reports it, right after us
        return None
    return None


def check_override_keys(argv: Sequence[str]) -> None:
    """Exit 2, as for any bad setting, on an override of a key that does not exist."""
    problem = unknown_key_problem(argv)
    if problem:
        print(f"[ERROR] {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
