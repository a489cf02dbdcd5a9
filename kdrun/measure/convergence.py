"""Learning curves and the convergence verdict: is a model still improving when its budget ends?

A model counts as converged when its test accuracy rose by less than CONVERGED_PTS points over
the last half of its budget (the curve point at half the steps against the final one). The
curve is for reporting only: no training decision reads it.
"""

from __future__ import annotations

import logging

from kdrun.measure.metrics import mean_ci

log = logging.getLogger(__name__)

CONVERGED_PTS = 1.0  # points of test accuracy over the last half of the budget


def last_half_gain(curve: list[dict]) -> float | None:
    """Points gained between the curve's half-budget point and its end; None when the curve
    has no point between 40% and 60% of the budget (e.g. student.curve=[1.0])."""
    total = curve[-1]["step"] if curve else 0
    near_half = [p for p in curve[:-1] if 0.4 * total <= p["step"] <= 0.6 * total]
    if not near_half:
        return None
    half = min(near_half, key=lambda p: abs(p["step"] - total / 2))
    return 100 * (curve[-1]["test_acc"] - half["test_acc"])


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The episodes' curves averaged point by point (every episode has the same steps)."""
    points = []
    for at_step in zip(*curves, strict=True):
        acc = mean_ci([p["test_acc"] for p in at_step])
        points.append(
            {"step": at_step[0]["step"], "test_acc": acc["mean"], "test_acc_ci95": acc["ci95"]}
        )
    return points


def verdict(curves: list[list[dict]], budget_key: str) -> dict:
    """The mean curve with its verdict; `budget_key` is the setting to raise if unconverged."""
    curve = mean_curve(curves)
    gain = last_half_gain(curve)
    converged = None if gain is None else gain < CONVERGED_PTS  # None: not measured
    out = {
        "curve": curve,
        "steps": curve[-1]["step"] if curve else 0,
        "last_half_gain_pts": None if gain is None else round(gain, 2),
        "converged": converged,
        "threshold_pts": CONVERGED_PTS,
    }
    if converged is False:
        out["note"] = (
            f"not converged: +{gain:.1f} points over the last half of its budget; "
            f"raise {budget_key}"
        )
    return out
