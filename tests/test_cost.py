"""Cost accounting: parameters and MACs against a hand count, the figures in every run's record,
and one measurement per architecture and machine (the cache)."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from kdrun.measure import cost as cost_mod
from kdrun.measure.cost import count_macs, count_params, model_cost, ratios
from kdrun.pipeline import run
from kdrun.report.run_table import ratio_line
from kdrun.stages import cost as cost_stage
from kdrun.store.cache import ArtifactCache
from tests.conftest import SMOKE_FAST, load_script

FIELDS = ("params", "macs", "size_mb", "latency_ms", "throughput")


def tiny_net() -> nn.Module:
    """conv 3->4 (3x3, pad 1, bias) on 8x8, ReLU, 2x2 max-pool, linear 4*4*4 -> 5."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )


def test_params_and_macs_match_a_hand_count():
    net = tiny_net()
    conv_params, fc_params = 4 * 3 * 3 * 3 + 4, 64 * 5 + 5
    assert count_params(net) == conv_params + fc_params == 437
    conv_macs = (4 * 8 * 8) * (3 * 3 * 3)  # one MAC per weight per output pixel
    fc_macs = 64 * 5
    assert count_macs(net, image_size=8) == conv_macs + fc_macs == 7232


def test_model_cost_figures_are_positive_and_finite():
    figures = model_cost(tiny_net(), 8)
    for key in FIELDS:
        assert figures[key] > 0 and math.isfinite(figures[key]), key
    assert figures["size_mb"] * 1e6 > 437 * 4  # the float32 weights at least


def test_ratios_and_the_table_line():
    teacher = {"params": 770, "macs": 900, "latency_ms": 4.0, "throughput": 100.0}
    student = {"params": 100, "macs": 100, "latency_ms": 1.0, "throughput": 400.0}
    r = ratios(teacher, student)
    assert r == {"params": 7.7, "macs": 9.0, "latency": 4.0, "throughput": 4.0}
    vs = {f"{k}_ratio": v for k, v in r.items()} | {"acc_points": -7.0}
    line = ratio_line({"student": {"vs_teacher": vs}})
    assert line == "student: 7.7x fewer parameters, 9x fewer MACs, 4x faster, -7.0 points"
    bigger = {f"{k}_ratio": 1 / v for k, v in r.items()} | {"acc_points": 1.5}
    assert "more parameters" in ratio_line({"student": {"vs_teacher": bigger}})


@pytest.mark.slow
def test_every_run_records_each_models_cost(compose_cfg, tmp_path):
    out = tmp_path / "run"
    run(compose_cfg(*SMOKE_FAST, "student.arch=resnet8"), out)
    m = json.loads((out / "metrics.json").read_text())
    for model in ("teacher", "student", "baseline"):
        for key in FIELDS:
            value = m[model]["cost"][key]
            assert value > 0 and math.isfinite(value), (model, key)
    assert m["teacher"]["cost"]["params"] == count_params(
        __import__("kdrun.models", fromlist=["build_model"]).build_model("cnn_small", 10)
    )
    assert m["baseline"]["cost"] == m["student"]["cost"]  # same architecture
    v = m["student"]["vs_teacher"]
    assert v["params_ratio"] == m["teacher"]["cost"]["params"] / m["student"]["cost"]["params"]
    assert v["macs_ratio"] == m["teacher"]["cost"]["macs"] / m["student"]["cost"]["macs"]
    points = 100 * (m["student"]["test_acc"] - m["teacher"]["test_acc"])
    assert v["acc_points"] == pytest.approx(points)
    assert m["timing"]["cost"] >= 0
    assert m["cache"]["cost"] == {"hit": 0, "miss": 2}  # two architectures, measured once each
    cost_table = load_script("cost_table")  # the README's table and plot read what runs wrote
    (row,) = cost_table.rows([out])
    assert row["inputs"] == f"pool {m['setting']['pool_requested']}"
    *_, teacher, line = cost_table.markdown([row]).splitlines()
    assert teacher.startswith("| **cnn_small** (the teacher) |")
    assert line.startswith("| cnn_small → resnet8 | pool ") and f"{v['macs_ratio']:.3g}x" in line
    cost_table.plot([row], tmp_path / "cost.png")
    assert (tmp_path / "cost.png").stat().st_size > 0


def test_costs_are_measured_once_per_architecture(tmp_path, monkeypatch):
    calls = []
    real = cost_stage.model_cost

    def counting(model, size):
        calls.append(type(model).__name__)
        return real(model, size)

    monkeypatch.setattr(cost_stage, "model_cost", counting)
    cache = ArtifactCache(tmp_path / "cache")
    archs = {"teacher": "cnn_small", "student": "cnn_small"}
    first = cost_stage.run_costs(archs, 10, 32, cache)
    assert len(calls) == 1 and first["teacher"] == first["student"]
    again = cost_stage.run_costs(archs, 10, 32, ArtifactCache(tmp_path / "cache"))
    assert len(calls) == 1 and again == first  # read back, not measured
    cost_stage.run_costs({"student": "cnn_small"}, 5, 32, cache)  # a 5-way head: another entry
    assert len(calls) == 2
    assert cost_mod.THROUGHPUT_BATCH == first["student"]["throughput_batch"] == 256
