"""Learning curves, the convergence verdict and budgets in passes."""

from __future__ import annotations

import csv

import pytest
from omegaconf import OmegaConf

from kdrun.measure.convergence import CONVERGED_PTS, last_half_gain, mean_curve, verdict
from kdrun.pipeline import run
from kdrun.stages.student import budget_key, budget_steps
from kdrun.train import curve_steps
from tests.conftest import SMOKE_FAST


def curve(*points: tuple[int, float]) -> list[dict]:
    return [{"step": s, "test_acc": a} for s, a in points]


def test_the_verdict_compares_the_half_budget_point_with_the_end():
    rising = curve((250, 0.40), (500, 0.60), (1000, 0.65))
    flat = curve((250, 0.40), (500, 0.645), (1000, 0.65))
    v = verdict([rising, rising], "student.epochs")
    assert v["last_half_gain_pts"] == 5.0 and v["converged"] is False
    assert v["note"] == (
        "not converged: +5.0 points over the last half of its budget; raise student.epochs"
    )
    assert verdict([flat], "student.steps")["converged"] is True
    assert CONVERGED_PTS > 100 * (0.65 - 0.645)


def test_without_a_point_near_half_the_budget_convergence_is_not_measured():
    assert last_half_gain(curve((250, 0.4), (1000, 0.7))) is None
    v = verdict([curve((1000, 0.7))], "student.epochs")
    assert v["converged"] is None and "note" not in v


def test_the_mean_curve_averages_episodes_point_by_point():
    mean = mean_curve([curve((5, 0.2), (10, 0.4)), curve((5, 0.4), (10, 0.6))])
    assert [p["step"] for p in mean] == [5, 10]
    assert [round(p["test_acc"], 6) for p in mean] == [0.3, 0.5]
    assert mean[0]["test_acc_ci95"] > 0


def test_curve_steps_are_distinct_and_within_the_budget():
    assert curve_steps(3157, [0.25, 0.5, 1.0]) == (789, 1578, 3157)
    assert curve_steps(3, [0.1, 0.2, 1.0]) == (1, 3)


def test_a_budget_in_passes_scales_with_the_inputs_and_has_a_floor():
    cfg = OmegaConf.create({"steps": None, "epochs": 20.0, "min_steps": 300, "batch_size": 64})
    assert budget_steps(cfg, 20_200) == 6313  # 20 passes over shots + pool, times 4 views
    assert budget_steps(cfg, 50) == 300  # the baseline's 50 shots: the floor
    assert budget_key(cfg) == "student.epochs"
    exact = OmegaConf.merge(cfg, {"steps": 123})
    assert budget_steps(exact, 20_200) == 123 and budget_key(exact) == "student.steps"


@pytest.mark.slow
def test_every_run_records_its_curves_in_metrics_and_history(compose_cfg, tmp_path):
    overrides = [o for o in SMOKE_FAST if not o.startswith("student.steps")]
    cfg = compose_cfg(*overrides, "student.steps=8", "episodes=2")
    metrics = run(cfg, tmp_path / "run")
    for stage in ("student", "baseline"):
        conv = metrics[stage]["convergence"]
        assert [p["step"] for p in conv["curve"]] == [2, 4, 8]
        assert conv["steps"] == 8 and isinstance(conv["converged"], bool)
        assert conv["curve"][-1]["test_acc"] == metrics[stage]["test_acc"]
        for episode in metrics["episodes"]:
            assert [p["step"] for p in episode["curves"][stage]] == [2, 4, 8]
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    points = [r for r in rows if r["test_acc"]]
    assert len(points) == 2 * 2 * 3  # episodes x models x curve points
    assert {r["stage"] for r in points} == {"student", "baseline"}
