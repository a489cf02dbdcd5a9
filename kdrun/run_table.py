"""The end-of-run table: what the teacher, the baseline and the distilled student scored."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def _acc(model: dict, episodes: int) -> str:
    if episodes == 1:
        return f"{model['test_acc']:.4f}"
    return f"{model['test_acc']:.4f} ± {model['test_acc_ci95']:.4f}"


def _with_verdict(note: str, model: dict) -> str:
    """A model still improving when its budget ended is flagged where its number is read."""
    v = model.get("convergence") or {}
    if v.get("converged") is not False:  # converged, or no curve point near half the budget
        return note
    gain = v["last_half_gain_pts"]
    return f"{note}; [bold yellow]not converged[/]: +{gain:.1f} pts in the last half"


def summary_table(metrics: dict) -> Table:
    timing, cache, s = metrics["timing"], metrics["cache"], metrics["setting"]
    episodes = s["episodes"]
    title = f"kdrun · {s['ways']}-way {s['shots']}-shot · seed {s['seed']}"
    if s["pool"]:
        title += f" · pool {s['pool']}"
    if s["views"]:
        title += f" · {s['views']} views" + (f" ({s['mix']})" if s["mix"] != "none" else "")
    if episodes > 1:
        title += f" · {episodes} episodes (mean ± 95% CI)"
    table = Table(title=title, title_justify="left")
    for col, right in (
        ("model", 0),
        ("arch", 0),
        ("test acc", 1),
        ("macro-F1", 1),
        ("time (s)", 1),
        ("note", 0),
    ):
        table.add_column(col, justify="right" if right else "left")
    t, b, st = metrics["teacher"], metrics["baseline"], metrics["student"]
    rows = (
        ("teacher", t, timing["teacher"] + timing["soft_labels"], t["source"]),
        ("baseline", b, timing["baseline"], _with_verdict("CE on the shots", b)),
        ("student", st, timing["student"], _with_verdict(f"loss={st['loss']}", st)),
    )
    for name, model, seconds, note in rows:
        table.add_row(
            name,
            model["arch"],
            _acc(model, episodes),
            f"{model['macro_f1']:.4f}",
            f"{seconds:.1f}",
            note,
        )
    table.add_section()
    gain = f"{metrics['kd_gain']:+.4f}"
    if episodes > 1:
        gain += f" ± {metrics['kd_gain_ci95']:.4f}"
    table.add_row(
        "kd gain",
        "",
        gain,
        "",
        f"{timing['total']:.1f}",
        f"cache: {cache['hits']} hit(s), {cache['misses']} miss(es)",
    )
    table.caption = f"run dir: {metrics['out_dir']}"
    return table


def print_summary(metrics: dict, console: Console | None = None) -> None:
    """Off a terminal (CI, sweeps, pipes) print at 120 columns so no cell wraps."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    console.print(summary_table(metrics))
