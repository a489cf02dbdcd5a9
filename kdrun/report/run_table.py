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


def human(n: float) -> str:
    """1234567 -> '1.2M': parameter and MAC counts at a glance."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _cost_cells(model: dict) -> list[str]:
    cost = model.get("cost")
    if not cost:  # a record written before cost accounting
        return ["", "", ""]
    return [human(cost["params"]), human(cost["macs"]), f"{cost['latency_ms']:.2f}"]


def _times(r: float | None) -> str:
    return f"{r:.2g}x" if r is not None and r < 10 else f"{r:.0f}x" if r is not None else "?"


def ratio_line(metrics: dict) -> str | None:
    """'student: 7.7x fewer parameters, 9x fewer MACs, 4x faster, -7.0 points': against the
    teacher, faster at batch-1 CPU latency, points of test accuracy."""
    v = metrics["student"].get("vs_teacher")
    if not v:
        return None

    def more_or_fewer(r: float | None, what: str) -> str:
        if r is not None and 0.95 <= r <= 1.05:
            return f"as many {what}"
        if r is not None and r < 1:
            return f"{_times(1 / r)} more {what}"
        return f"{_times(r)} fewer {what}"

    lat = v["latency_ratio"]
    speed = f"{_times(lat)} faster" if lat is None or lat >= 1 else f"{_times(1 / lat)} slower"
    if lat is not None and 0.9 <= lat <= 1.1:  # within timing noise
        speed = "as fast"
    parts = [
        more_or_fewer(v["params_ratio"], "parameters"),
        more_or_fewer(v["macs_ratio"], "MACs"),
        speed,
        f"{v['acc_points']:+.1f} points",
    ]
    return "student: " + ", ".join(parts)


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


def cost_line(name: str, model: dict) -> str | None:
    """One model's cost in words, for a console too narrow for the cost columns."""
    c = model.get("cost")
    if not c:
        return None
    return (
        f"{name}: {human(c['params'])} params · {human(c['macs'])} MACs · {c['size_mb']:.1f} MB"
        f" · {c['latency_ms']:.2f} ms · {c['throughput']:,.0f} img/s"
    )


def summary_table(metrics: dict, with_notes: bool = True, with_cost: bool = True) -> Table:
    """The run's table; without `with_notes` (`with_cost`) the notes (the cost figures) are
    left for lines below it."""
    timing, s = metrics["timing"], metrics["setting"]
    episodes = s["episodes"]
    title = f"kdrun · {s['ways']}-way {s['shots']}-shot · seed {s['seed']}"
    if s["pool"]:
        title += f" · pool {s['pool']}"
    transfer = s.get("transfer", "pool")
    if transfer not in ("pool", "shots"):
        title += f" · transfer={transfer}"
    if s["views"]:
        title += f" · {s['views']} views" + (f" ({s['mix']})" if s["mix"] != "none" else "")
    if episodes > 1:
        title += f" · {episodes} episodes (mean ± 95% CI)"
    table = Table(title=title, title_justify="left")
    val = "val_acc" in metrics["student"]  # data.val_per_class > 0
    columns = [("model", 0), ("arch", 0), ("test acc", 1), ("macro-F1", 1), ("time (s)", 1)]
    if with_cost:  # ms: the median CPU latency of one image on one thread
        columns += [("params", 1), ("MACs", 1), ("ms", 1)]
    if val:
        columns.insert(2, ("val acc", 1))
    for col, right in columns + ([("note", 0)] if with_notes else []):
        table.add_column(col, justify="right" if right else "left")
    t, b, st = metrics["teacher"], metrics["baseline"], metrics["student"]
    rows = (
        ("teacher", t, timing["teacher"] + timing.get("soft_labels", 0.0)),
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
            *(_cost_cells(model) if with_cost else []),
        ]
        if val:
            cells.insert(2, _acc(model, episodes, "val"))
        table.add_row(*cells, *([text[name]] if with_notes else []))
        if name == "teacher" and timing.get("transfer"):  # synthesis: its own time
            made = sum(r.get("transfer", {}).get("images", 0) for r in metrics["episodes"])
            note = f"{made} images made over {episodes} episode(s)"
            row = ["transfer", transfer, "", "", f"{timing['transfer']:.1f}"]
            row += ["", "", ""] if with_cost else []
            if val:
                row.insert(2, "")
            table.add_row(*row, *([note] if with_notes else []))
    table.add_section()
    gain = f"{metrics['kd_gain']:+.4f}"
    if episodes > 1:
        gain += f" ± {metrics['kd_gain_ci95']:.4f}"
    total = f"total {timing['total']:.1f}"  # the run's wall time, not a sum of the rows above
    gain_row = ["kd gain", "", gain, "", total, *(["", "", ""] if with_cost else [])]
    if val:
        gain_row.insert(2, "")
    table.add_row(*gain_row, *([text["kd gain"]] if with_notes else []))
    table.caption = f"run dir: {metrics['out_dir']}"
    return table


def print_summary(metrics: dict, console: Console | None = None) -> None:
    """Off a terminal (CI, sweeps, pipes) print at 120 columns so no cell wraps; on a narrower
    console the notes, then the cost figures, go below the table, one line each, instead of
    wrapping in a cell. The student-vs-teacher ratios follow on one line."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    unbounded = console.options.update_width(10_000)  # the width the table wants, unclamped
    layouts = ((True, True), (False, True), (False, False))
    for with_notes, with_cost in layouts:
        table = summary_table(metrics, with_notes, with_cost)
        if console.measure(table, options=unbounded).maximum <= console.width:
            break
    console.print(table)
    if not with_notes:
        for name, note in notes(metrics):
            console.print(f"  {note}" if name == "kd gain" else f"  {name}: {note}")
    if not with_cost:
        for name in ("teacher", "baseline", "student"):
            line = cost_line(name, metrics[name])
            if line:
                console.print(f"  {line}")
    ratios = ratio_line(metrics)
    if ratios:
        console.print(f"  {ratios}")
