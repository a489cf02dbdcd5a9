"""Device resolution, and the compiled training path exercised on the CPU."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from kdrun.errors import ConfigError
from kdrun.pipeline import run
from kdrun.runtime.device import resolve_runtime
from tests.conftest import SMOKE_FAST


def dev(**kw):
    base = {
        "type": "auto",
        "precision": "auto",
        "channels_last": "auto",
        "threads": 0,
        "compile": False,
    }
    return OmegaConf.create({**base, **kw})


def test_auto_picks_a_present_device_and_cpu_defaults_to_fp32():
    rt = resolve_runtime(dev())
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert rt.device.type == expected
    cpu = resolve_runtime(dev(type="cpu"))
    assert cpu.autocast_dtype is None and not cpu.channels_last
    assert resolve_runtime(dev(type="cpu", precision="bf16")).autocast_dtype is torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_an_absent_device_is_a_config_error():
    with pytest.raises(ConfigError, match="device.type=cuda"):
        resolve_runtime(dev(type="cuda"))


@pytest.mark.slow
def test_compiled_training_runs_on_cpu(compose_cfg, tmp_path):
    out = run(compose_cfg(*SMOKE_FAST, "device.compile=true"), tmp_path / "run")
    assert "torch.compile" in out["device"]
    assert 0.0 <= out["student"]["test_acc"] <= 1.0
