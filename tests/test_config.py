"""Every option of every group composes against the schema; bad values fail before any work."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from kdrun.errors import ConfigError
from kdrun.preflight import check_ranges, preflight
from tests.conftest import CONF_DIR, compose_config

GROUPS = ["teacher", "student", "data", "loss", "device", "experiment"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in _options(g)], ids=lambda v: str(v)
)
def test_every_option_composes_and_passes_range_checks(group, option):
    overrides = [f"{group}={option}"]
    if option == "folder":
        overrides.append("data.root=/some/tree")
    cfg = compose_config(overrides)
    check_ranges(cfg)
    assert cfg.ways == 10 or group == "experiment"


def test_defaults_are_documented_values():
    cfg = compose_config()
    assert (cfg.ways, cfg.shots, cfg.seed) == (10, 5, 0)
    assert (cfg.loss.name, cfg.loss.alpha, cfg.loss.temperature) == ("kd", 0.9, 4.0)
    assert cfg.teacher.arch == "cnn_large" and cfg.student.arch == "cnn_small"


def test_cache_dir_defaults_to_env(monkeypatch):
    monkeypatch.setenv("KDRUN_CACHE_DIR", "/elsewhere/cache")
    assert compose_config().cache_dir == "/elsewhere/cache"
    monkeypatch.delenv("KDRUN_CACHE_DIR")
    assert compose_config().cache_dir == "outputs/cache"


@pytest.mark.parametrize(
    "override,error",
    [
        ("shots=abc", ValidationError),
        ("teacher.epochs=1.5", ValidationError),
        ("data.download=maybe", ValidationError),
        ("teacher.nope=1", ConfigKeyError),
        ("student=nope", ConfigCompositionException),
    ],
)
def test_schema_rejects_wrong_types_unknown_keys_and_options(override, error):
    with pytest.raises((error, ConfigCompositionException)):
        compose_config([override])


@pytest.mark.parametrize(
    "override,needle",
    [
        ("shots=0", "shots=0"),
        ("shots=-3", "shots=-3"),
        ("ways=0", "ways=0"),
        ("loss.alpha=2", "loss.alpha=2"),
        ("loss.alpha=-0.1", "loss.alpha=-0.1"),
        ("loss.temperature=0", "loss.temperature=0"),
        ("teacher.arch=nope", "teacher.arch='nope'"),
        ("student.steps=0", "student.steps=0"),
        ("teacher.lr=0", "teacher.lr=0"),
        ("device.type=tpu", "device.type='tpu'"),
        ("device.precision=fp8", "device.precision='fp8'"),
    ],
)
def test_range_checks_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=None) as info:
        check_ranges(compose_config([override]))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["experiment=smoke", "ways=11"], "ways=11"),
        (["experiment=smoke", "shots=201"], "shots=201"),
        (["data.root=/nonexistent/cifar", "data.download=false"], "data.download=false"),
        (["data=folder", "data.root=/nonexistent/tree"], "data.root=/nonexistent/tree"),
        (["experiment=smoke", "teacher.checkpoint=/nonexistent.pt"], "teacher.checkpoint"),
        (["experiment=smoke", "data.num_classes=1"], "data.num_classes=1"),
    ],
)
def test_preflight_checks_against_the_data(overrides, needle):
    with pytest.raises(ConfigError) as info:
        preflight(compose_config(overrides))
    assert needle in str(info.value)
