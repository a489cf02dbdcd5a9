"""Files a tracker attaches to a run beside metrics.json and history.csv: the run's table as
printed at its end, and its learning curves as a plot."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kdrun.report.run_table import summary_table

CURVE_MODELS = (("student", "-"), ("baseline", "--"))


def run_table_text(record: dict) -> str:
    """The end-of-run table as plain text (no colour codes), 120 columns like a CI log."""
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(summary_table(record))
    return buf.getvalue()


def curve_plot(record: dict, path: Path) -> None:
    """Test accuracy of the student and the baseline at their curve steps (mean over episodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, style in CURVE_MODELS:
        curve = record[model]["convergence"]["curve"]
        steps = [p["step"] for p in curve]
        ax.plot(steps, [100 * p["test_acc"] for p in curve], style, marker="o", label=model)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
