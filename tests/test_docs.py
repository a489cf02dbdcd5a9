"""The docs cannot drift from the code: every config key's default, as the schemas in
kdrun/config.py and the default options compose it, is the one docs/configuration.md gives;
the README's links into the docs resolve."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from kdrun.config import (
    DATA_SCHEMAS,
    EXPORT_SCHEMAS,
    LOGGER_SCHEMAS,
    LOSS_SCHEMAS,
    TRANSFER_SCHEMAS,
)
from tests.conftest import CONF_DIR, compose_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
# The variants whose keys differ: every loss method, tracker and data source brings its own.
# The defaults (loss=kd, logger=none, data=cifar10) are the first variant.
VARIANTS = (
    [[]]
    + [[f"loss={name}"] for name in LOSS_SCHEMAS if name != "kd"]
    + [[f"logger={name}"] for name in LOGGER_SCHEMAS if name != "none"]
    + [[f"data={name}"] for name in DATA_SCHEMAS if name not in ("cifar10", "folder")]
    + [["data=folder", "data.root=/some/tree"]]
    + [[f"transfer={name}"] for name in TRANSFER_SCHEMAS if name != "pool"]
    + [[f"export={name}"] for name in EXPORT_SCHEMAS if name != "none"]
)
OPTION_NAMES = {
    group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    for group in (
        "teacher",
        "student",
        "data",
        "loss",
        "device",
        "logger",
        "experiment",
        "transfer",
        "export",
    )
}
NUMBER = re.compile(r"(?<![\w.$/])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w/])")
ENV = re.compile(r"^\$\{oc\.env:(\w+),(.*)\}$")


def split_row(line: str) -> list[str]:
    """A markdown table row's cells; a `|` inside backticks belongs to its cell."""
    cells, cell, code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            code = not code
        if char == "|" and not code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
    return [*cells, cell.strip()]


def documented_defaults() -> dict[str, str]:
    """Key -> its row's `default` cell, from the page's key tables."""
    defaults: dict[str, str] = {}
    column = None
    for line in CONFIG_DOC.read_text().splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = split_row(line)
        if column is None:
            column = cells.index("default") if "default" in cells else -1
        elif column >= 0 and not set(cells[0]) <= {"-"}:
            defaults[cells[0].strip("`")] = cells[column]
    return defaults


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{name}.")
        else:
            out[f"{prefix}{name}"] = value
    return out


def segment_for(cell: str, group: str, option: str) -> str | None:
    """The part of a cell that gives `option`'s value (`kd` 0.9, `dkd` 1.0), if it names it."""
    label = f"`{option}`"
    if label not in cell:
        return None
    start = cell.index(label)
    others = [
        cell.find(f"`{o}`", start + len(label)) for o in OPTION_NAMES.get(group, []) if o != option
    ]
    return cell[start : min([i for i in others if i >= 0], default=len(cell))]


def shows(text: str, value: object) -> bool:
    """Whether `text` states `value` as a reader would write it."""
    if value is None:
        return re.search(r"\bnull\b", text) is not None
    if isinstance(value, bool):
        return re.search(rf"\b{str(value).lower()}\b", text) is not None
    if isinstance(value, int | float):
        return any(math.isclose(float(n), value) for n in NUMBER.findall(text))
    if isinstance(value, list):
        return str(value) in text
    env = ENV.match(str(value))
    if env:  # ${oc.env:VAR,fallback} reads as `$VAR`, else `fallback`
        return f"`${env[1]}`" in text and f"`{env[2]}`" in text
    return re.search(rf"(?<![\w/.]){re.escape(str(value))}(?![\w/.])", text) is not None


def default_choices() -> dict[str, str | None]:
    """The option conf/config.yaml's defaults list picks for each group."""
    choices = {}
    for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            if group in OPTION_NAMES:
                choices[group] = option
    return choices


def test_every_composed_default_is_the_documented_one():
    documented = documented_defaults()
    base = leaves(OmegaConf.to_container(compose_config([]), resolve=False))
    wrong, checked = [], 0
    for overrides in VARIANTS:
        option_of = default_choices() | dict(
            o.split("=", 1) for o in overrides if "." not in o.split("=")[0]
        )
        composed = leaves(OmegaConf.to_container(compose_config(overrides), resolve=False))
        for key, value in composed.items():
            group = key.split(".")[0]
            if any(o.startswith(f"{key}=") for o in overrides):
                continue  # set here to compose the option, not a default
            if key not in documented:
                wrong.append(f"{key}: no row in {CONFIG_DOC.name}")
                continue
            cell = documented[key]
            option = option_of.get(group)
            part = segment_for(cell, group, option) if option else None
            if part is None:
                if overrides and key in base:  # the default config's value is the one shown
                    continue
                part = cell
            checked += 1
            if not shows(part, value):
                wrong.append(f"{key}={value!r} ({' '.join(overrides) or 'defaults'}): {cell!r}")
    assert checked > 60
    assert not wrong, "\n".join(wrong)


def test_every_group_row_names_the_default_option():
    documented = documented_defaults()
    choices = default_choices()
    assert set(choices) == set(OPTION_NAMES)
    for group, option in choices.items():
        cell = documented[group]
        assert (option is None and cell == "none") or f"`{option}`" == cell, (group, cell)


def test_the_checks_catch_a_changed_default():
    """The matcher must fail on a value the page does not give (a test that cannot fail is no
    test)."""
    documented = documented_defaults()
    assert shows(documented["student.lr"], 0.02) and not shows(documented["student.lr"], 0.03)
    assert shows(documented["teacher.weight_decay"], 5e-4)
    assert not shows(documented["teacher.weight_decay"], 5e-3)
    assert shows(segment_for(documented["loss.alpha"], "loss", "dkd"), 1.0)
    assert not shows(segment_for(documented["loss.alpha"], "loss", "kd"), 1.0)
    assert not shows(documented["student.curve"], [0.25, 1.0])
    assert not shows(documented["device.compile"], True)


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_relative_links_resolve(page):
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    missing = [t for t in targets if "://" not in t and not (path.parent / t).exists()]
    assert not missing, missing
