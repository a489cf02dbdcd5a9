"""Every default has one home: the schemas (kdrun/config.py, each loss's and data source's own
dataclass). The YAML files choose options and set only what an option changes, so a value
restated in YAML (or a YAML that disagrees with the schema it restates) fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kdrun.config import (
    DATA_SCHEMAS,
    EXPORT_SCHEMAS,
    LOGGER_SCHEMAS,
    Config,
    DeviceConf,
    StudentConf,
    TeacherConf,
)
from kdrun.losses import LOSSES
from tests.conftest import CONF_DIR, compose_config

# Keys that name the option itself rather than configure it.
IDENTITY_KEYS = {"defaults", "name", "source", "arch", "type"}


def schema_for(path: Path) -> type:
    group, option = path.parent.name, path.stem
    node = OmegaConf.load(path)
    return {
        "teacher": lambda: TeacherConf,
        "student": lambda: StudentConf,
        "device": lambda: DeviceConf,
        "data": lambda: DATA_SCHEMAS[option],
        "loss": lambda: LOSSES[node.name].schema,
        "logger": lambda: LOGGER_SCHEMAS[option],
        "export": lambda: EXPORT_SCHEMAS[option],
    }[group]()


def defaults_of(schema: type) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)


def restated(node: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys whose YAML value equals the schema default, i.e. a second home for that default."""
    found = []
    for key, value in node.items():
        if key in IDENTITY_KEYS or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            found += restated(value, defaults[key], f"{prefix}{key}.")
        elif value == defaults[key]:
            found.append(f"{prefix}{key}={value!r}")
    return found


OPTION_FILES = sorted(
    p
    for g in ("teacher", "student", "device", "data", "loss", "logger", "export")
    for p in (CONF_DIR / g).glob("*.yaml")
)


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_option_file_restates_a_schema_default(path):
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    assert restated(node, defaults_of(schema_for(path))) == []


@pytest.mark.parametrize(
    "path",
    sorted(p for g in ("loss", "logger", "export") for p in (CONF_DIR / g).glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_a_loss_or_logger_file_only_names_its_option(path):
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert set(node) == {"defaults", "name"}


def test_the_primary_config_sets_no_schema_value():
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    fields = {f.name for f in dataclasses.fields(Config)}
    assert set(node) & fields == set()


def test_the_composed_defaults_are_the_schemas():
    """What a user gets from a bare `kdrun` is what a reader of the schemas learns."""
    cfg = compose_config([])
    top = defaults_of(Config)
    for key in ("ways", "shots", "seed", "episodes", "pool", "eval_batch_size"):
        assert cfg[key] == top[key]
    assert OmegaConf.to_container(cfg.soft_labels) == top["soft_labels"]
    student = defaults_of(StudentConf)
    for key in ("batch_size", "lr", "steps", "epochs", "min_steps", "optimizer"):
        assert cfg.student[key] == student[key]
    assert cfg.teacher.epochs == defaults_of(TeacherConf)["epochs"]
    assert OmegaConf.to_container(cfg.loss) == {**defaults_of(LOSSES["kd"].schema), "name": "kd"}
    assert OmegaConf.to_container(cfg.logger) == {"name": "none"}


@pytest.mark.parametrize("option", sorted(LOGGER_SCHEMAS))
def test_each_logger_option_is_its_schema(option):
    cfg = compose_config([f"logger={option}"])
    node = OmegaConf.to_container(cfg.logger, resolve=False)
    assert node == {**defaults_of(LOGGER_SCHEMAS[option]), "name": option}


def test_synthetic_keys_belong_to_data_synthetic_only():
    assert "num_classes" not in compose_config([]).data
    assert compose_config(["data=synthetic"]).data.train_per_class == 200
