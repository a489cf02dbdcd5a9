"""Shared fixtures: composing configs the way the CLI does, a private cache, the real data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from kdrun.config import register_configs

register_configs()

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_script(name: str) -> ModuleType:
    """A script of scripts/ (not a package) imported by path, for its tests."""
    path = CONF_DIR.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_module("kdrun.conf", version_base="1.3"):
        return compose("config", overrides=overrides or [])


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose with a private cache dir so tests never share artifacts by accident."""

    def make(*overrides: str, cache: Path | None = None) -> DictConfig:
        cache_dir = cache or tmp_path / "cache"
        return compose_config([*overrides, f"cache_dir={cache_dir}"])

    return make


SMOKE_FAST = [
    "experiment=smoke",
    "data.train_per_class=60",
    "data.test_per_class=20",
    "teacher.epochs=1",
    "student.steps=5",
]


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = os.environ.get("KDRUN_TEST_CIFAR10")
    if not root or not (Path(root) / "train").is_dir():
        pytest.skip(
            "real-data test: set KDRUN_TEST_CIFAR10 to an unpacked CIFAR-10 class-folder tree "
            "(.ci/run unpacks the shared copy there)"
        )
    return Path(root)
