"""`kdrun-report PATH...`: one table and plot from any set of run or sweep directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from kdrun.errors import ConfigError, StorageError
from kdrun.report.runs_summary import collect, to_rich, write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kdrun-report", description="Combine kdrun runs and sweeps into one table and plot."
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/report"), help="where summary.* go"
    )
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        print(f"kdrun-report: not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    problems: list[str] = []
    try:
        rows = collect(args.paths, problems)
    except ConfigError as exc:
        print(f"kdrun-report: {exc} Nothing was written.", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"kdrun-report: skipping {problem}", file=sys.stderr)
    if not rows:
        print("kdrun-report: no run record (metrics.json) under the given paths", file=sys.stderr)
        return 1
    try:
        paths = write_summary(rows, args.out)
    except StorageError as exc:
        print(f"kdrun-report: {exc}", file=sys.stderr)
        return 2
    Console(width=None if sys.stdout.isatty() else 140).print(
        to_rich(rows, f"kdrun report · {len(rows)} runs")
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
