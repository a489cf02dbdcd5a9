"""The end-of-run table: what the teacher, the baseline and the distilled student scored."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def summary_table(metrics: dict) -> Table:
    timing, cache = metrics["timing"], metrics["cache"]
    ep = metrics["episode"]
    title = f"kdrun · {ep['ways']}-way {ep['shots']}-shot · seed {ep['seed']}"
    table = Table(title=title, title_justify="left")
    for col in ("model", "arch", "test acc", "macro-F1", "time (s)", "note"):
        table.add_column(
            col, justify="right" if col in ("test acc", "macro-F1", "time (s)") else "left"
        )
    teacher = metrics["teacher"]
    teacher_time = timing["teacher"] + timing["soft_labels"]
    table.add_row(
        "teacher",
        teacher["arch"],
        f"{teacher['test_acc']:.4f}",
        f"{teacher['macro_f1']:.4f}",
        f"{teacher_time:.1f}",
        teacher["source"],
    )
    b = metrics["baseline"]
    table.add_row(
        "baseline",
        b["arch"],
        f"{b['test_acc']:.4f}",
        f"{b['macro_f1']:.4f}",
        f"{timing['baseline']:.1f}",
        "CE on the shots",
    )
    s = metrics["student"]
    table.add_row(
        "student",
        s["arch"],
        f"{s['test_acc']:.4f}",
        f"{s['macro_f1']:.4f}",
        f"{timing['student']:.1f}",
        f"loss={s['loss']}",
    )
    table.add_section()
    table.add_row(
        "kd gain",
        "",
        f"{metrics['kd_gain']:+.4f}",
        "",
        f"{timing['total']:.1f}",
        f"cache: {cache['hits']} hit(s), {cache['misses']} miss(es)",
    )
    table.caption = f"run dir: {metrics['out_dir']}"
    return table


def print_summary(metrics: dict, console: Console | None = None) -> None:
    (console or Console()).print(summary_table(metrics))
