"""The end-of-run table: every figure labelled, and readable on an 80-column terminal."""

from __future__ import annotations

import io

from rich.console import Console

from kdrun.report.run_table import print_summary

NOTE = "student: loss=fitnet; not converged: +6.0 pts in the last half"


def metrics(baseline_source: str = "cache") -> dict:
    """A record as run_metrics writes it, with a not-converged student (the longest note)."""
    report = {"arch": "cnn_small", "test_acc": 0.5, "test_acc_ci95": 0.01, "macro_f1": 0.49}
    return {
        "teacher": {**report, "source": "trained"},
        "baseline": {**report, "source": baseline_source},
        "student": {
            **report,
            "loss": "fitnet",
            "convergence": {"converged": False, "last_half_gain_pts": 6.0},
        },
        "kd_gain": 0.1,
        "kd_gain_ci95": 0.02,
        "setting": {"ways": 10, "shots": 5, "seed": 0, "episodes": 5, "pool": 50, "views": 4}
        | {"mix": "none"},
        "timing": {"teacher": 10.0, "soft_labels": 1.0, "baseline": 0.0, "student": 20.0}
        | {"total": 206.3},
        "cache": {"hits": 3, "misses": 2},
        "out_dir": "/tmp/run",
    }


def render(m: dict, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    print_summary(m, console)
    return console.export_text().splitlines()


def test_at_80_columns_no_line_wraps_a_note_and_notes_go_below_the_table():
    lines = render(metrics(), 80)
    assert max(len(line) for line in lines) <= 80
    assert f"  {NOTE}" in lines  # intact, on its own line below the table
    assert "  baseline: cache; CE on the shots" in lines
    assert "  cache: 3 hit(s), 2 miss(es)" in lines
    (gain,) = [line for line in lines if line.startswith("│ kd gain")]
    assert "total 206.3" in gain


def test_a_wide_console_keeps_the_notes_in_the_table():
    lines = render(metrics("trained"), 170)
    (student,) = [line for line in lines if line.startswith("│ student")]
    assert student.rstrip(" │").endswith(NOTE.removeprefix("student: "))
    (baseline,) = [line for line in lines if line.startswith("│ baseline")]
    assert "CE on the shots" in baseline and "cache" not in baseline
