"""The README's "does tuning help" table from finished searches and their `kdrun-winner` runs.

    python scripts/search_table.py NAME=SWEEP_DIR... [--out results/search_k5/table.md]

One row per search: its trials (finished, and failed or diverged: Optuna FAILs), the search's
CPU-minutes (the trials' wall seconds x threads, the teacher's training left out: it is shared
with every other run of the same data), the settings it chose and the validation accuracy it
chose them on, then the fresh-episode evaluation (the newest `evaluation/*/evaluation.json`):
the defaults' and the winner's test accuracy, the CE baseline's, and the paired difference
winner - defaults, each as mean ± 95% CI, with kdrun's convergence verdict of both runs. An
evaluation with `kdrun-winner --set` (one budget for both, say) adds a row of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from kdrun.report.runs_summary import collect, pipe_table, record_threads
from kdrun.report.winner import RESULTS, pm
from kdrun.store.record import verify_record


def _cpu_minutes(run_dir: Path) -> float:
    """The run's wall seconds minus its teacher stage, times its threads, in minutes."""
    m = verify_record(run_dir).record
    timing = m["timing"]
    return (timing["total"] - timing.get("teacher", 0.0)) * record_threads(m) / 60


def _settings(params: dict) -> str:
    short = {"loss.temperature": "T", "loss.alpha": "α", "student.epochs": "passes"}
    return ", ".join(
        f"{short.get(k, k)} {v:.3g}" if isinstance(v, float) else f"{short.get(k, k)} {v}"
        for k, v in params.items()
    )


def rows(name: str, sweep: Path) -> list[dict]:
    """One search and its evaluations, the newest of each `--set` (none first); ValueError if
    the search or every evaluation is unfinished."""
    evaluations = sweep.glob("evaluation/*/evaluation.json")
    newest_last = sorted(evaluations, key=lambda p: p.stat().st_mtime)
    if not (sweep / RESULTS).is_file() or not newest_last:
        raise ValueError(f"{sweep}: no {RESULTS} or no kdrun-winner evaluation yet")
    # The trials' own dirs (0, 1, ...): the sweep root also holds the evaluation's two runs.
    # A trial that raised has a dir but no record: it counts as failed.
    trial_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    ok = [t for t in collect(trial_dirs) if t.status == "ok"]
    best = OmegaConf.to_container(OmegaConf.load(sweep / RESULTS))
    search = {
        "trials": len(trial_dirs),
        "failed": len(trial_dirs) - len(ok),
        "search_episodes": ok[0].episodes if ok else 0,
        "search_cpu_min": sum(_cpu_minutes(Path(t.run_dir)) for t in ok),
        "chosen": _settings(best["best_params"]),
        "search_val": 100 * best["best_value"],
    }
    newest = {}  # each --set (a tuple; () for none) → its newest evaluation
    for path in newest_last:
        report = json.loads(path.read_text())
        newest[tuple(report.get("set", []))] = (path, report)
    return [
        {"name": f"{name}, both at {' '.join(fixed)}" if fixed else name}
        | search
        | _evaluation(*newest[fixed])
        for fixed in sorted(newest, key=len)
    ]


def _evaluation(path: Path, report: dict) -> dict:
    """The fresh-episode columns of one evaluation.json and kdrun's verdict on its two runs."""
    converged = {}
    for role, run_dir in report["runs"].items():
        runs = collect([Path(run_dir)])
        if not runs:
            raise ValueError(f"{path}: its {role} run {run_dir} has no record")
        converged[role] = runs[0].converged
    return {
        "episodes": report["episodes"],
        "defaults": pm(report["defaults"]),
        "winner": pm(report["winner"]),
        "baseline": pm(report["baseline"]),
        "difference": pm(report["difference"], "+"),
        "converged": f"{converged['winner']} / {converged['defaults']}",
        "eval_cpu_min": sum(_cpu_minutes(Path(p)) for p in report["runs"].values()),
    }


def _cells(r: dict) -> list[str]:
    return [
        r["name"],
        f"{r['trials']} ({r['failed']})",
        f"{r['search_cpu_min']:.0f}",
        r["chosen"],
        f"{r['search_val']:.1f}",
        str(r["episodes"]),
        r["defaults"],
        r["winner"],
        r["baseline"],
        r["difference"],
        r["converged"],
        f"{r['eval_cpu_min']:.0f}",
    ]


def markdown(rows: list[dict]) -> str:
    head = [
        "recipe",
        "trials (failed)",
        "search CPU-min",
        "chosen on validation",
        "search val %",
        "fresh episodes",
        "defaults test %",
        "winner test %",
        "CE test %",
        "winner − defaults, paired",
        "converged (winner / defaults)",
        "evaluation CPU-min",
    ]
    return pipe_table(head, [_cells(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("searches", nargs="+", help="NAME=SWEEP_DIR, one per search")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    try:
        specs = [spec.split("=", 1) for spec in args.searches]
        if any(len(s) != 2 for s in specs):
            raise ValueError(f"{args.searches}: each search is NAME=SWEEP_DIR")
        table = [r for name, sweep in specs for r in rows(name, Path(sweep))]
    except ValueError as exc:
        print(f"search_table: {exc}", file=sys.stderr)
        return 2
    text = markdown(table)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
