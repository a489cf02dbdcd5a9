"""The README's "only K images" table from kdrun run dirs: what each transfer buys per CPU-minute.

    python scripts/transfer_table.py RUN_OR_SWEEP_DIR... [--csv results/transfer/summary.csv]
        [--png results/transfer/curve.png]

One row per verified run (metrics.json whose checksums hold), grouped by K: the transfer and its
budget, the CE baseline and the distilled student (mean ± 95% CI over episodes), their paired
gain, the convergence verdict, and the CPU-minutes per episode spent making the transfer set
(synthesis), labelling it (soft labels) and distilling the student: wall seconds x threads.

--png draws where each transfer tops out: the student's test accuracy against CPU-minutes and
against the inputs it has seen, at each point of its learning curve (student.curve: a quarter,
half and all of the budget by default), mean over the run's episodes; the teacher is dashed.
"""

from __future__ import annotations

import argparse
import csv
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np

from kdrun.report.runs_summary import collect, pipe_table, record_threads
from kdrun.store.record import verify_record

BUDGET_KEYS = ("images", "steps", "batch_size", "mix", "adversarial_weight")


def describe(cfg: dict) -> str:
    """`transfer=NAME` with the keys that set its budget, and the views of the labelled set."""
    t, soft = cfg["transfer"], cfg["soft_labels"]
    keys = [f"{k}={t[k]}" for k in BUDGET_KEYS if k in t]
    if t["name"] != "mix" and soft["views"]:
        keys.append(f"views={soft['views']}" + (f" {soft['mix']}" if soft["mix"] != "none" else ""))
    return f"{t['name']} ({', '.join(keys)})" if keys else t["name"]


def student_recipe(cfg: dict) -> str:
    """The student's learning rate and KD weight: at one budget they move a row by points."""
    parts = [f"lr {cfg['student']['lr']:g}"]
    if cfg["loss"]["name"] != "kd":
        parts.append(f"loss {cfg['loss']['name']}")
    if "alpha" in cfg["loss"]:
        parts.append(f"alpha {cfg['loss']['alpha']:g}")
    return ", ".join(parts)


def step_batch(m: dict) -> int:
    """Inputs a student step held: recorded since runs fill a batch with views of few images;
    before that, a set of views held at most one per image (at most ways x shots)."""
    recorded = m["episodes"][0]["student"].get("batch")
    if recorded:
        return int(recorded)
    cfg = m["config"]
    batch = cfg["student"]["batch_size"]
    if cfg["transfer"]["name"] == "shots":
        return min(batch, cfg["ways"] * cfg["shots"])
    return batch


def rows(paths: list[Path]) -> list[dict]:
    out = []
    for r in collect(paths):
        if r.status != "ok":
            continue
        m = verify_record(Path(r.run_dir)).record
        cfg, timing = m["config"], m["timing"]
        threads = record_threads(m)
        per_episode = threads / 60 / r.episodes
        batch = step_batch(m)
        quality = [(e["soft_labels"] or {}).get("teacher_on_shots") for e in m["episodes"]]
        quality = [q for q in quality if q]
        smoothing = cfg["teacher"].get("label_smoothing", 0)  # it changes what views teach
        out.append(
            {
                "shots": cfg["shots"],
                "transfer": (
                    f"{describe(cfg)}, {r.student_steps:,} steps of {batch}, {student_recipe(cfg)}"
                ),
                "teacher_arch": f"{r.teacher_arch} (ls {smoothing:g})",
                "student_arch": r.student_arch,
                # the teacher's top class is the view's larger part (shots' views, every episode)
                "teacher_agrees": (
                    100 * float(np.mean([q["agrees"] for q in quality])) if quality else None
                ),
                "teacher_acc": 100 * r.teacher_acc,
                "episodes": r.episodes,
                "baseline": 100 * r.baseline_acc,
                "baseline_ci95": 100 * r.baseline_ci95,
                "student": 100 * r.student_acc,
                "student_ci95": 100 * r.student_ci95,
                "gain": 100 * r.kd_gain,
                "gain_ci95": 100 * r.kd_gain_ci95,
                "converged": r.converged,
                "synthesis_cpu_min": timing.get("transfer", 0.0) * per_episode,
                "labels_cpu_min": timing.get("soft_labels", 0.0) * per_episode,
                "student_cpu_min": timing.get("student", 0.0) * per_episode,
                "threads": threads,
                "batch_size": batch,
                "run_dir": r.run_dir,
            }
        )
    return sorted(out, key=lambda row: (row["shots"], -row["student"]))


def markdown(table: list[dict]) -> str:
    head = [
        "K",
        "transfer (budget)",
        "teacher",
        "teacher agrees on the shots' views %",
        "student",
        "episodes",
        "CE baseline",
        "KD student",
        "paired gain",
        "converged",
        "CPU-min/episode: synthesis + labels + student",
        "gain points per CPU-min",
    ]
    lines = []
    for t in table:
        spent = t["synthesis_cpu_min"] + t["labels_cpu_min"] + t["student_cpu_min"]
        cells = [
            str(t["shots"]),
            t["transfer"],
            f"{t['teacher_arch']} {t['teacher_acc']:.1f}%",
            "—" if t["teacher_agrees"] is None else f"{t['teacher_agrees']:.1f}",
            t["student_arch"],
            str(t["episodes"]),
            f"{t['baseline']:.1f} ± {t['baseline_ci95']:.1f}",
            f"**{t['student']:.1f} ± {t['student_ci95']:.1f}**",
            f"{t['gain']:+.1f} ± {t['gain_ci95']:.1f}",
            "yes" if t["converged"] == "yes" else f"{t['converged']} †",
            f"{t['synthesis_cpu_min']:.1f} + {t['labels_cpu_min']:.1f} + "
            f"{t['student_cpu_min']:.1f} = {spent:.1f}",
            f"{t['gain'] / spent:.1f}" if spent else "—",
        ]
        lines.append(cells)
    return pipe_table(head, lines)


def curve(row: dict) -> list[tuple[float, int, float]]:
    """(CPU-minutes per episode so far, inputs seen, mean test accuracy) per curve point of the
    distilled student; the synthesis and labelling are spent before its first step."""
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    clocks: dict[str, list[tuple[int, float]]] = defaultdict(list)  # (step, seconds) per episode
    curve_rows = []
    with (Path(row["run_dir"]) / "history.csv").open() as f:
        for line in csv.DictReader(f):
            if line["stage"] != "student":
                continue
            if line["seconds"]:
                clocks[line["episode"]].append((int(line["step"]), float(line["seconds"])))
            if line["test_acc"]:
                curve_rows.append(line)
    for line in curve_rows:  # a curve point has no time of its own: interpolate its step's
        step, known = int(line["step"]), [(0, 0.0), *sorted(clocks[line["episode"]])]
        at = float(np.interp(step, [k[0] for k in known], [k[1] for k in known]))
        points[step].append((at, float(line["test_acc"])))
    spent = row["synthesis_cpu_min"] + row["labels_cpu_min"]
    out = []
    for step, values in sorted(points.items()):
        seconds = sum(v[0] for v in values) / len(values)
        acc = sum(v[1] for v in values) / len(values)
        out.append((spent + seconds * row["threads"] / 60, step * row["batch_size"], 100 * acc))
    return out


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, (by_time, by_inputs) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for i, row in enumerate(table):
        points = curve(row)
        style = {
            "marker": "o",
            "color": f"C{i % 10}",
            # wrapped: a budget label is longer than a legend column is wide
            "label": textwrap.fill(
                f"K={row['shots']} {row['transfer']}, teacher {row['teacher_arch']}", 90
            ),
        }
        by_time.plot([p[0] for p in points], [p[2] for p in points], **style)
        by_inputs.plot([p[1] for p in points], [p[2] for p in points], **style)
    teachers = {row["teacher_arch"]: row["teacher_acc"] for row in table}
    for ax in (by_time, by_inputs):
        for n, (arch, acc) in enumerate(sorted(teachers.items())):
            grey = f"{0.2 + 0.6 * n / len(teachers):.2f}"  # distinct greys, never past white
            ax.axhline(acc, ls="--", color=grey, label=f"teacher {arch} {acc:.1f}%")
        ax.grid(alpha=0.3)
    by_time.set_xlabel("CPU-minutes per episode (synthesis + labels + student so far)")
    by_inputs.set_xlabel("inputs the student has seen (steps x batch)")
    by_inputs.set_xscale("log")
    by_inputs.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 20k, 50k, 100k, ...
    by_inputs.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
    by_inputs.xaxis.set_minor_formatter(NullFormatter())
    by_time.set_ylabel("distilled student's test accuracy (%)")
    fig.suptitle("10-way K-shot CIFAR-10, no image beyond the shots: where each transfer tops out")
    # below the axes, where the long budget labels hide no curve; a legend fills its first
    # column first, and the figure grows with the lines of the longer column
    handles, labels = by_time.get_legend_handles_labels()
    lines = [label.count("\n") + 1 for label in labels]
    half = (len(lines) + 1) // 2
    legend_rows = max(sum(lines[:half]), sum(lines[half:]))
    fig.set_figheight(4.8 + 0.16 * legend_rows)
    fig.tight_layout()
    fig.subplots_adjust(bottom=(0.65 + 0.16 * legend_rows) / fig.get_figheight())
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--csv", type=Path, help="also write the rows as CSV here")
    parser.add_argument("--png", type=Path, help="also draw the learning curves here")
    args = parser.parse_args(argv)
    table = rows(args.dirs)
    if not table:
        print("no verified kdrun run under the given directories", file=sys.stderr)
        return 1
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    if args.png:
        plot(table, args.png)
    print(markdown(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
