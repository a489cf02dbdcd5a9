"""Sweep summaries: one row per run (overrides, accuracies with CIs, gain, time) as CSV,
Markdown, a rich table and a plot. Used by the multirun callback and by `kdrun-report`."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from kdrun.errors import ConfigError
from kdrun.store.cache import atomic_write
from kdrun.store.record import RECORD, verify_record
from kdrun.store.storage import storage_error


@dataclass
class RunRow:
    """One job; the numbers are None unless status is ok (a verified record of a finished run)."""

    run_dir: str
    overrides: str
    status: str  # ok | diverged | failed | missing | unverified
    teacher_acc: float | None = None
    baseline_acc: float | None = None
    baseline_ci95: float | None = None
    student_acc: float | None = None
    student_ci95: float | None = None
    kd_gain: float | None = None
    kd_gain_ci95: float | None = None
    episodes: int | None = None
    seconds: float | None = None
    student_steps: int | None = None
    student_last_half_pts: float | None = None  # gain over the last half of the budget
    baseline_last_half_pts: float | None = None
    converged: str = ""  # "yes", or which model was still improving (measure/convergence.py)
    loss: str = ""  # the settings a plot's title names when every run shares them
    teacher_arch: str = ""
    student_arch: str = ""
    ways: int | None = None
    data: str = ""  # the data source (and root): overrides leave paths out, so rows look alike

    # Cost (kdrun/measure/cost.py): the baseline shares the student's architecture.
    teacher_params: int | None = None
    teacher_macs: int | None = None
    teacher_latency_ms: float | None = None
    student_params: int | None = None
    student_macs: int | None = None
    student_size_mb: float | None = None
    student_latency_ms: float | None = None
    student_throughput: float | None = None
    params_ratio: float | None = None  # teacher / student
    macs_ratio: float | None = None
    speedup: float | None = None  # teacher latency / student latency
    student_onnx_latency_ms: float | None = None  # export=onnx: under onnxruntime
    # data.val_per_class > 0: the validation accuracy a search selected on, beside the test's
    student_val_acc: float | None = None
    baseline_val_acc: float | None = None


def data_source(m: dict) -> str:
    """`source` or `source:root` from a record's resolved config; "" for a record without."""
    data = (m.get("config") or {}).get("data") or {}
    if not isinstance(data, dict) or not data.get("source"):
        return ""
    root = data.get("root")
    return f"{data['source']}:{root}" if root and data["source"] != "synthetic" else data["source"]


def _cost(m: dict) -> dict:
    """Cost columns; records written before cost accounting have none."""
    t, s = m["teacher"].get("cost"), m["student"].get("cost")
    if not t or not s:
        return {}
    v = m["student"].get("vs_teacher") or {}
    onnx = (m["student"].get("export") or {}).get("onnxruntime_latency_ms")
    return {
        "teacher_params": t["params"],
        "teacher_macs": t["macs"],
        "teacher_latency_ms": t["latency_ms"],
        "student_params": s["params"],
        "student_macs": s["macs"],
        "student_size_mb": s["size_mb"],
        "student_latency_ms": s["latency_ms"],
        "student_throughput": s["throughput"],
        "params_ratio": v.get("params_ratio"),
        "macs_ratio": v.get("macs_ratio"),
        "speedup": v.get("latency_ratio"),
        "student_onnx_latency_ms": onnx,
    }


def _convergence(m: dict) -> dict:
    """Budget and verdict columns; records written before learning curves have none."""
    s, b = m["student"].get("convergence"), m["baseline"].get("convergence")
    if not s or not b:
        return {"converged": "not measured"}
    models = (("student", s), ("baseline", b))
    late = [f"{n} +{v['last_half_gain_pts']:.1f}" for n, v in models if v["converged"] is False]
    unknown = all(v["converged"] is None for _, v in models)
    return {
        "student_steps": s["steps"],
        "student_last_half_pts": s["last_half_gain_pts"],
        "baseline_last_half_pts": b["last_half_gain_pts"],
        "converged": "no: " + ", ".join(late) if late else "not measured" if unknown else "yes",
    }


def row_from_record(run_dir: Path, m: dict, status: str = "") -> RunRow:
    """A row from a record alone: its own overrides and numbers, never a sibling file's."""
    status = status or m.get("status", "ok")
    overrides = " ".join(m.get("overrides") or [])
    if status != "ok":
        return RunRow(str(run_dir), overrides, status, data=data_source(m))
    return RunRow(
        run_dir=str(run_dir),
        overrides=overrides,
        status=status,
        teacher_acc=m["teacher"]["test_acc"],
        baseline_acc=m["baseline"]["test_acc"],
        baseline_ci95=m["baseline"].get("test_acc_ci95", 0.0),
        student_acc=m["student"]["test_acc"],
        student_ci95=m["student"].get("test_acc_ci95", 0.0),
        kd_gain=m["kd_gain"],
        kd_gain_ci95=m.get("kd_gain_ci95", 0.0),
        episodes=m.get("setting", {}).get("episodes", 1),
        seconds=m["timing"]["total"],
        **_convergence(m),
        loss=m["student"].get("loss", ""),
        teacher_arch=m["teacher"].get("arch", ""),
        student_arch=m["student"].get("arch", ""),
        ways=m.get("setting", {}).get("ways"),
        data=data_source(m),
        **_cost(m),
        student_val_acc=m["student"].get("val_acc"),
        baseline_val_acc=m["baseline"].get("val_acc"),
    )


def read_run(run_dir: Path, problems: list[str] | None = None) -> RunRow | None:
    """The run's row; None when metrics.json is absent, or does not verify (the reason is
    appended to `problems`). An older kdrun's record without checksum gives an unverified row;
    a metrics.json that is not a regular file of plausible size raises ConfigError unread."""
    check = verify_record(run_dir)
    if check.state == "absent":
        return None
    if check.state == "special":  # a FIFO or device named metrics.json: hostile, not damaged
        raise ConfigError(check.problem)
    if check.record is None:
        if problems is not None:
            problems.append(f"{run_dir / RECORD}: {check.problem}")
        return None
    return row_from_record(run_dir, check.record, "unverified" if check.state != "ok" else "")


def by_validation(rows: list[RunRow]) -> bool:
    """True when every finished run has a validation score: then it, not the test score,
    ranks them (a search's summary must not read as a selection on the test split)."""
    done = [r for r in rows if r.status == "ok"]
    return bool(done) and all(r.student_val_acc is not None for r in done)


def ranked(rows: list[RunRow]) -> list[RunRow]:
    """Finished runs best student first (on val_acc when all have one, else test_acc), then
    the others in directory order."""
    attr = "student_val_acc" if by_validation(rows) else "student_acc"
    return sorted(rows, key=lambda r: (r.status != "ok", -(getattr(r, attr) or 0.0)))


def collect(paths: Iterable[Path], problems: list[str] | None = None) -> list[RunRow]:
    """Every recorded run under the given run or sweep directories, best student first; a
    metrics.json that does not verify adds a line to `problems` instead of a row."""
    rows = []
    for root in paths:
        for metrics in sorted(Path(root).rglob(RECORD)):
            row = read_run(metrics.parent, problems)
            if row is not None:
                rows.append(row)
    return ranked(rows)


def to_csv(rows: list[RunRow]) -> str:
    buf = io.StringIO()
    fields = list(RunRow.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()


def _pm(value: float, ci: float, episodes: int) -> str:
    return f"{100 * value:.1f}" + (f" ± {100 * ci:.1f}" if episodes > 1 else "")


def _human(n: float | None) -> str:
    if n is None:
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _x(r: float | None) -> str:
    return "?" if r is None else f"{r:.2g}" if r < 10 else f"{r:.0f}"


def _cost_cells(r: RunRow) -> list[str]:
    if r.student_macs is None:
        return ["", "", "", ""]
    ratios = f"{_x(r.params_ratio)}x / {_x(r.macs_ratio)}x / {_x(r.speedup)}x"
    return [
        _human(r.student_params),
        _human(r.student_macs),
        f"{r.student_latency_ms:.2f}",
        ratios,
    ]


def _val_cells(r: RunRow) -> list[str]:
    if r.status != "ok" or r.student_val_acc is None:
        return ["", ""]
    return [f"{100 * r.baseline_val_acc:.1f}", f"{100 * r.student_val_acc:.1f}"]


def _label(r: RunRow, show_data: bool) -> str:
    label = r.overrides or "(defaults)"
    return f"{label} [data {r.data or '?'}]" if show_data else label


def _data_differs(rows: list[RunRow]) -> bool:
    """Rows from different data sources or roots: say which, or equal overrides look equal."""
    return len({r.data for r in rows}) > 1


def _cells(r: RunRow, show_data: bool = False, val: bool = False) -> list[str]:
    cells = _test_cells(r, show_data)
    return [cells[0], *_val_cells(r), *cells[1:]] if val else cells


def _test_cells(r: RunRow, show_data: bool) -> list[str]:
    if r.status != "ok":
        return [_label(r, show_data), *[""] * (len(HEADER) - 2), r.status]
    return [
        _label(r, show_data),
        f"{100 * r.teacher_acc:.1f}",
        _pm(r.baseline_acc, r.baseline_ci95, r.episodes),
        _pm(r.student_acc, r.student_ci95, r.episodes),
        (f"{100 * r.kd_gain:+.1f}" + (f" ± {100 * r.kd_gain_ci95:.1f}" if r.episodes > 1 else "")),
        f"{r.seconds:.0f}",
        *_cost_cells(r),
        r.converged,
        r.status,
    ]


HEADER = [
    "overrides",
    "teacher %",
    "baseline %",
    "student %",
    "gain (pts)",
    "time (s)",
    "student params",
    "student MACs",
    "student ms",
    "vs teacher: params / MACs / latency",
    "converged",
    "status",
]


VAL_HEADER = ["baseline val %", "student val %"]


def _header(val: bool) -> list[str]:
    """The validation columns sit first, left of the test ones, when any run has them."""
    return [HEADER[0], *VAL_HEADER, *HEADER[1:]] if val else HEADER


def _has_val(rows: list[RunRow]) -> bool:
    return any(r.student_val_acc is not None for r in rows)


def pipe_table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A markdown table: the header, its rule, one line per row of cells (the scripts' too)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def record_threads(m: dict) -> int:
    """The CPU threads a record's run used: its device line, else the threads it asked for."""
    found = re.search(r"(\d+) CPU threads", m.get("device") or "")
    return int(found.group(1)) if found else m["config"]["device"]["threads"] or 1


def to_markdown(rows: list[RunRow]) -> str:
    val, show = _has_val(rows), _data_differs(rows)
    return pipe_table(_header(val), (_cells(r, show, val) for r in rows))


def to_rich(rows: list[RunRow], title: str) -> Table:
    val = _has_val(rows)
    if by_validation(rows):
        title += " · ranked by student val_acc"
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(_header(val)):
        table.add_column(col, justify="left" if i == 0 else "right")
    show = _data_differs(rows)
    for r in rows:
        table.add_row(*_cells(r, show, val))
    return table


def _parse(overrides: str) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides.split() if "=" in o)


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _band(ax, pts: list[tuple], attr: str, style: str, color: str, label: str) -> None:
    """One accuracy curve with its 95% CI band; categories (e.g. loss=...) get error bars."""
    xs = [t[0] for t in pts]
    ys = [100 * getattr(t[1], f"{attr}_acc") for t in pts]
    ci = [100 * getattr(t[1], f"{attr}_ci95") for t in pts]
    if any(isinstance(x, str) for x in xs):  # no line between unordered categories
        fmt = "o" if style == "-" else "_"
        ax.errorbar(xs, ys, yerr=ci, fmt=fmt, ms=8, capsize=4, color=color, label=label)
        return
    ax.plot(xs, ys, style, marker="o", color=color, label=label)
    lo = [y - c for y, c in zip(ys, ci, strict=True)]
    hi = [y + c for y, c in zip(ys, ci, strict=True)]
    ax.fill_between(xs, lo, hi, color=color, alpha=0.15)


def _fixed_settings(rows: list[RunRow], parsed: list[dict[str, str]], varying: list[str]) -> str:
    """What every run shares: common overrides, then the record's settings no override names."""
    common = [f"{k}={parsed[0][k]}" for k in sorted(parsed[0]) if k not in varying]
    named = {k for p in parsed for k in p}
    recorded = (
        ("loss", lambda r: r.loss and f"loss={r.loss}"),
        ("teacher", lambda r: r.teacher_arch and f"teacher={r.teacher_arch}"),
        ("student", lambda r: r.student_arch and f"student={r.student_arch}"),
        ("ways", lambda r: r.ways and f"{r.ways}-way"),
        ("episodes", lambda r: r.episodes and f"{r.episodes} episode" + "s" * (r.episodes > 1)),
    )
    for key, text in recorded:
        values = {text(r) for r in rows}
        if key not in named and len(values) == 1 and None not in values and "" not in values:
            common.append(values.pop())
    return ", ".join(common)


def _x_axis(ax, xs: list, key: str) -> None:
    """Ticks at the swept values (integers stay integers), on a log scale past a 4x span."""
    ax.set_xlabel(key)
    if any(isinstance(x, str) for x in xs):
        return
    values = sorted(set(xs))
    if values[0] > 0 and values[-1] / values[0] > 4:
        ax.set_xscale("log")
        ax.minorticks_off()
    if len(values) <= 12:
        ax.set_xticks(values, [f"{x:g}" for x in values])
    elif all(float(x).is_integer() for x in values):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_xscale() == "log":
        ax.set_xlabel(f"{key} (log scale)")


def draw(rows: list[RunRow]):
    """Student (solid) and baseline (dashed) accuracy against the first numeric swept key, one
    line per combination of the other swept keys, with 95% CI bands; None if nothing varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.status == "ok"]  # no numbers to draw for the others
    parsed = [_parse(r.overrides) for r in rows]
    keys = sorted({k for p in parsed for k in p})
    varying = [k for k in keys if len({p.get(k) for p in parsed}) > 1]
    numeric = [k for k in varying if all(_number(p.get(k, "x")) is not None for p in parsed)]
    if not rows or not varying:
        return None
    x_key = numeric[0] if numeric else varying[0]
    others = [k for k in varying if k != x_key]
    # One series: name it by the loss it distilled with, not "all runs".
    single = f"loss={rows[0].loss}" if rows[0].loss and len({r.loss for r in rows}) == 1 else ""
    groups: dict[str, list[tuple]] = {}
    for r, p in zip(rows, parsed, strict=True):
        label = " ".join(f"{k}={p.get(k)}" for k in others) or single
        x = _number(p[x_key]) if numeric else p.get(x_key, "?")
        groups.setdefault(label, []).append((x, r))
    for pts in groups.values():
        pts.sort(key=lambda t: t[0])
    # Sweeps over the loss, pool or views share one baseline per x: draw it once, in grey.
    shared = len({tuple((t[0], t[1].baseline_acc) for t in pts) for pts in groups.values()}) == 1
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (label, pts) in enumerate(sorted(groups.items())):
        curves = [("student", "-", f"C{i % 10}", f"student {label}".strip())]
        if not shared:
            curves.append(("baseline", "--", f"C{i % 10}", f"baseline {label}".strip()))
        elif i == 0:
            curves.append(("baseline", "--", "0.4", "baseline (CE on the shots)"))
        for attr, style, color, name in curves:
            _band(ax, pts, attr, style, color, name)
    _x_axis(ax, [t[0] for pts in groups.values() for t in pts], x_key)
    by = f", one line per {', '.join(others)}" if others else ""
    fixed = _fixed_settings(rows, parsed, varying)
    title = f"student accuracy vs {x_key}{by}" + (f"\n{fixed}" if fixed else "")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    last = sorted(range(len(labels)), key=lambda j: labels[j].startswith("baseline ("))
    ax.legend(
        [handles[j] for j in last],
        [labels[j] for j in last],
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    fig.tight_layout()
    return fig


SUMMARY_FILES = ("summary.csv", "summary.md", "summary.png")  # every file a summary owns


def plot_png(rows: list[RunRow]) -> bytes | None:
    """summary.png's bytes from `draw`; None if nothing varies."""
    fig = draw(rows)  # selects the Agg backend before pyplot is imported here
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def plot(rows: list[RunRow], path: Path) -> bool:
    """summary.png from `draw`; False (and no file) if nothing varies."""
    png = plot_png(rows)
    if png is not None:
        atomic_write(path, lambda f: f.write(png))
    return png is not None


def write_summary(rows: list[RunRow], out_dir: Path) -> list[Path]:
    """summary.csv, summary.md and (when something varies) summary.png in `out_dir`, all
    rendered before any is written; an owned file this summary has no content for (an earlier
    sweep's plot) is removed, so no file in `out_dir` describes other runs."""
    png = plot_png(rows) if rows else None
    contents = {
        "summary.csv": to_csv(rows).encode(),
        "summary.md": to_markdown(rows).encode(),
        "summary.png": png,
    }
    written = []
    for name in SUMMARY_FILES:
        path, data = out_dir / name, contents[name]
        if data is None:
            remove_stale(path)
            continue
        atomic_write(path, lambda f, data=data: f.write(data))
        written.append(path)
    return written


def remove_stale(path: Path) -> None:
    """Delete an owned summary file this summary does not rewrite; failing that, say so."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise storage_error(path, exc) from exc
