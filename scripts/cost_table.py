"""The README-ready cost table and the accuracy-vs-MACs plot from kdrun run or sweep dirs.

    python scripts/cost_table.py RUN_OR_SWEEP_DIR... [--png cost.png]

One row per verified run (metrics.json whose checksums hold): what the student distilled
(a pool or a no-pool transfer), the student's and the teacher's accuracy, the student's
params, MACs, batch-1 CPU latency under PyTorch and (export=onnx, or kdrun-export's
export.json) under onnxruntime, the ratios to the teacher and kdrun's convergence verdict.
The plot puts test accuracy against MACs per image on a log axis, teachers and students both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kdrun.report.runs_summary import RunRow, collect, pipe_table
from kdrun.store.record import verify_record


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _onnx_ms(run_dir: Path, m: dict) -> float | None:
    info = m["student"].get("export") or {}
    if "onnxruntime_latency_ms" not in info and (run_dir / "export.json").is_file():
        info = json.loads((run_dir / "export.json").read_text())
    return info.get("onnxruntime_latency_ms")


def inputs(setting: dict) -> str:
    """What the student distilled beyond its shots: the pool recipe or a no-pool transfer."""
    transfer = setting.get("transfer", "pool")
    if transfer == "pool":
        pool = setting.get("pool_requested", setting.get("pool"))
        return f"pool {pool}" if setting.get("pool") else "shots only"
    return f"{transfer} (no pool)"


def rows(paths: list[Path]) -> list[dict]:
    out = []
    for r in collect(paths):
        if r.status != "ok" or r.student_macs is None:
            continue
        m = verify_record(Path(r.run_dir)).record
        init = (m["student"].get("init") or {}).get("from", "scratch")
        out.append(
            {
                "run": r,
                "teacher": m["teacher"]["arch"],
                "student": m["student"]["arch"],
                "init": init,
                "loss": m["student"]["loss"],
                "onnx_ms": _onnx_ms(Path(r.run_dir), m),
                "points": m["student"]["vs_teacher"]["acc_points"],
                "inputs": inputs(m["setting"]),
            }
        )
    return out


HEADER = [
    "teacher → student",
    "inputs",
    "loss, init",
    "episodes",
    "accuracy %",
    "teacher %",
    "params",
    "MACs",
    "PyTorch ms",
    "onnxruntime ms",
    "fewer params",
    "fewer MACs",
    "faster",
    "vs teacher (pts)",
    "converged",
]


def teacher_rows(table: list[dict]) -> list[list[str]]:
    """One row per teacher: its own cost, the figures the students' ratios divide."""
    seen: dict[str, RunRow] = {}
    for t in table:
        seen.setdefault(t["teacher"], t["run"])
    rows_ = []
    for name, r in seen.items():
        cells = [f"**{name}** (the teacher)", "all labelled training images", "—", "—"]
        cells += [f"{100 * r.teacher_acc:.1f}", "—", _human(r.teacher_params)]
        cells += [_human(r.teacher_macs), f"{r.teacher_latency_ms:.2f}", "—", "1x", "1x", "1x"]
        cells += ["0", "—"]
        rows_.append(cells)
    return rows_


def markdown(table: list[dict]) -> str:
    lines = teacher_rows(table)
    for t in table:
        r = t["run"]
        ci = f" ± {100 * r.student_ci95:.1f}" if r.episodes > 1 else ""
        onnx = f"{t['onnx_ms']:.2f}" if t["onnx_ms"] is not None else "—"
        cells = [
            f"{t['teacher']} → {t['student']}",
            t["inputs"],
            f"{t['loss']}, {t['init']}",
            str(r.episodes),
            f"{100 * r.student_acc:.1f}{ci}",
            f"{100 * r.teacher_acc:.1f}",
            _human(r.student_params),
            _human(r.student_macs),
            f"{r.student_latency_ms:.2f}",
            onnx,
            f"{r.params_ratio:.3g}x",  # 3 digits: 3.96x is not the 4x a goal may ask for
            f"{r.macs_ratio:.3g}x",
            f"{r.speedup:.3g}x",
            f"{t['points']:+.1f}",
            r.converged,
        ]
        lines.append(cells)
    return pipe_table(HEADER, lines)


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    teachers = {}
    for i, t in enumerate(table):
        r = t["run"]
        teachers[t["teacher"]] = (r.teacher_macs, 100 * r.teacher_acc)
        label = f"{t['student']} ({t['inputs']}; {t['loss']}, init {t['init']}) ← {t['teacher']}"
        ax.errorbar(
            r.student_macs,
            100 * r.student_acc,
            yerr=100 * r.student_ci95 if r.episodes > 1 else None,
            fmt="o",
            capsize=3,
            color=f"C{i % 10}",
            label=label,
        )
    for name, (macs, acc) in teachers.items():
        ax.plot(macs, acc, "k^", ms=8)
        ax.axvline(macs / 4, color="0.5", ls=":", lw=1)  # compression goals are often 1/4
        ax.annotate(
            f"1/4 of {name}'s MACs",
            (macs / 4, ax.get_ylim()[0]),
            fontsize=7,
            rotation=90,
            xytext=(3, 4),
            textcoords="offset points",
            va="bottom",
            color="0.4",
        )
        ax.annotate(
            f"teacher {name}", (macs, acc), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs cost: students (circles) and their teachers (triangles)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the points
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--png", type=Path, default=Path("cost.png"), help="where the plot goes")
    args = parser.parse_args(argv)
    table = rows(args.paths)
    if not table:
        print(
            "cost_table: no finished run with cost figures under the given paths", file=sys.stderr
        )
        return 1
    print(markdown(table), end="")
    plot(table, args.png)
    print(f"\nplot: {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
