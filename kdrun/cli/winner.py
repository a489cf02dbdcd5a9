"""`kdrun-winner SWEEP_DIR`: re-run a search's winner and the defaults on fresh episodes (seeds
the search never saw) and report both test accuracies and their paired difference, with 95%
CIs. The search selected on validation images; this is the number to report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from kdrun.cli.override_keys import unknown_key_problem
from kdrun.report.winner import (
    check_fixed,
    describe,
    evaluation_name,
    fresh_seed,
    paired_comparison,
    read_selection,
    run_overrides,
)
from kdrun.store.cache import atomic_write_text
from kdrun.store.record import verify_record


def _run(overrides: list[str], run_dir: Path) -> dict:
    """One ordinary kdrun run in its own process (a finished one is reused, as always)."""
    command = [sys.executable, "-m", "kdrun", *overrides, f"hydra.run.dir={run_dir}"]
    print("$ kdrun " + " ".join(command[3:]), flush=True)
    proc = subprocess.run(command, check=False)
    check = verify_record(run_dir)
    if proc.returncode != 0 or check.state != "ok" or check.record.get("status", "ok") != "ok":
        raise RuntimeError(f"the run in {run_dir} did not finish (exit {proc.returncode})")
    return check.record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kdrun-winner",
        description="Re-run a search's winner and the defaults on fresh episodes; report both.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the root of a kdrun hparams_search sweep")
    parser.add_argument("--episodes", type=int, default=5, help="fresh episodes (default 5)")
    parser.add_argument(
        "--seed-offset", type=int, default=100, help="fresh seed = search seed + this (100)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the two runs go (SWEEP_DIR/evaluation)"
    )
    parser.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for both runs, over the winner's (repeatable): --set student.epochs=160 "
        "compares the chosen settings with the defaults at one budget",
    )
    args = parser.parse_args(argv)
    try:
        if args.episodes < 2:
            raise ValueError(f"--episodes {args.episodes}: a CI needs at least 2 episodes")
        fixed = check_fixed(args.fixed)
        selection = read_selection(args.sweep_dir)
        seed = fresh_seed(selection, args.seed_offset, args.episodes)
        # A --set key no config has: said here, before the first run, as kdrun says it.
        problem = unknown_key_problem(run_overrides(selection, seed, args.episodes, True, fixed))
        if problem:
            raise ValueError(problem)
    except ValueError as exc:
        print(f"kdrun-winner: {exc}", file=sys.stderr)
        return 2
    # absolute: evaluation.json is read from anywhere (search_table, a results/ copy)
    out = (args.out or args.sweep_dir / "evaluation").absolute()
    name = evaluation_name(seed, args.episodes, fixed)
    try:
        records = {
            role: _run(
                run_overrides(selection, seed, args.episodes, role == "winner", fixed),
                out / name / role,
            )
            for role in ("winner", "defaults")
        }
        comparison = paired_comparison(records["winner"], records["defaults"])
    except (RuntimeError, ValueError) as exc:
        print(f"kdrun-winner: {exc}", file=sys.stderr)
        return 1
    report = {
        "sweep_dir": str(selection.sweep_dir),
        "best_params": selection.best_params,
        "search_val_acc": selection.best_value,
        "set": fixed,
        "runs": {role: str(out / name / role) for role in records},
        **comparison,
    }
    path = out / name / "evaluation.json"
    atomic_write_text(json.dumps(report, indent=2), path)
    print("\n".join(describe(selection, comparison, fixed)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
