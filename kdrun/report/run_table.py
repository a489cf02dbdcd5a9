"""The end-of-run table: what the teacher, the baseline and the distilled student scored."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def _acc(model: dict, episodes: int, split: str = "test") -> str:
    if f"{split}_acc" not in model:  # the teacher has no validation score
        return ""
    if episodes == 1:
        return f"{model[f'{split}_acc']:.4f}"
    return f"{model[f'{split}_acc']:.4f} ± {model[f'{split}_acc_ci95']:.4f}"


def _with_verdict(note: str, model: dict) -> str:
    """A model still improving when its budget ended is flagged where its number is read."""
    v = model.get("convergence") or {}
    if v.get("converged") is not False:  # converged, or no curve point near half the budget
        return note
    gain = v["last_half_gain_pts"]
    return f"{note}; [bold yellow]not converged[/]: +{gain:.1f} pts in the last half"


def notes(metrics: dict) -> list[tuple[str, str]]:
    """(row, note) for each row: what produced the number and whether to trust it."""
    t, b, st, cache = metrics["teacher"], metrics["baseline"], metrics["student"], metrics["cache"]
    baseline = "CE on the shots"
    if b.get("source", "trained") != "trained":  # a cached baseline took no time in this run
        baseline = f"{b['source']}; {baseline}"
    return [
        ("teacher", t["source"]),
        ("baseline", _with_verdict(baseline, b)),
        ("student", _with_verdict(f"loss={st['loss']}", st)),
        ("kd gain", f"cache: {cache['hits']} hit(s), {cache['misses']} miss(es)"),
    ]


def summary_table(metrics: dict, with_notes: bool = True) -> Table:
    """The run's table; without `with_notes` the notes are left for lines below it."""
    timing, s = metrics["timing"], metrics["setting"]
    episodes = s["episodes"]
    title = f"kdrun · {s['ways']}-way {s['shots']}-shot · seed {s['seed']}"
    if s["pool"]:
        title += f" · pool {s['pool']}"
    if s["views"]:
        title += f" · {s['views']} views" + (f" ({s['mix']})" if s["mix"] != "none" else "")
    if episodes > 1:
        title += f" · {episodes} episodes (mean ± 95% CI)"
    table = Table(title=title, title_justify="left")
    val = "val_acc" in metrics["student"]  # data.val_per_class > 0
    columns = [("model", 0), ("arch", 0), ("test acc", 1), ("macro-F1", 1), ("time (s)", 1)]
    if val:
        columns.insert(2, ("val acc", 1))
    for col, right in columns + ([("note", 0)] if with_notes else []):
        table.add_column(col, justify="right" if right else "left")
    t, b, st = metrics["teacher"], metrics["baseline"], metrics["student"]
    rows = (
        ("teacher", t, timing["teacher"] + timing["soft_labels"]),
        ("baseline", b, timing["baseline"]),
        ("student", st, timing["student"]),
    )
    text = dict(notes(metrics))
    for name, model, seconds in rows:
        cells = [
            name,
            model["arch"],
            _acc(model, episodes),
            f"{model['macro_f1']:.4f}",
            f"{seconds:.1f}",
        ]
        if val:
            cells.insert(2, _acc(model, episodes, "val"))
        table.add_row(*cells, *([text[name]] if with_notes else []))
    table.add_section()
    gain = f"{metrics['kd_gain']:+.4f}"
    if episodes > 1:
        gain += f" ± {metrics['kd_gain_ci95']:.4f}"
    total = f"total {timing['total']:.1f}"  # the run's wall time, not a sum of the rows above
    gain_row = ["kd gain", "", gain, "", total]
    if val:
        gain_row.insert(2, "")
    table.add_row(*gain_row, *([text["kd gain"]] if with_notes else []))
    table.caption = f"run dir: {metrics['out_dir']}"
    return table


def print_summary(metrics: dict, console: Console | None = None) -> None:
    """Off a terminal (CI, sweeps, pipes) print at 120 columns so no cell wraps; on a narrow
    terminal the notes go below the table, one line each, instead of wrapping in a cell."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    table = summary_table(metrics)
    unbounded = console.options.update_width(10_000)  # the width the table wants, unclamped
    if console.measure(table, options=unbounded).maximum <= console.width:
        console.print(table)
        return
    console.print(summary_table(metrics, with_notes=False))
    for name, note in notes(metrics):
        console.print(f"  {note}" if name == "kd gain" else f"  {name}: {note}")
