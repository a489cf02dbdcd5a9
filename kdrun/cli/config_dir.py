"""A YAML syntax error in a user's `--config-dir` file: one paragraph naming the file and line,
before Hydra composes (Hydra prints ~90 lines of traceback through its own loader)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml


def config_dirs(argv: Sequence[str]) -> list[Path]:
    """The `--config-dir` / `-cd` directories on a command line, in either spelling."""
    dirs = []
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                dirs.append(Path(argv[i + 1]))
            elif arg.startswith(flag + "="):
                dirs.append(Path(arg[len(flag) + 1 :]))
    return dirs


def yaml_problem(directory: Path) -> str | None:
    """The first `.yaml` file under `directory` that does not parse, as one paragraph."""
    for file in sorted(directory.rglob("*.yaml")):
        try:
            yaml.safe_load(file.read_text(errors="replace"))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{file}, line {mark.line + 1}, column {mark.column + 1}" if mark else file
            context = f" ({exc.context}" if exc.context else ""
            if context and exc.context_mark and exc.context_mark is not mark:
                context += f" that starts on line {exc.context_mark.line + 1}"
            context += ")" if context else ""
            return (
                f"{where}: not valid YAML: {exc.problem}{context}. Fix the file (from "
                "--config-dir); HYDRA_FULL_ERROR=1 shows Hydra's own traceback."
            )
        except (OSError, yaml.YAMLError):
            continue  # unreadable or odd files are Hydra's to report, if it reads them
    return None


def check_config_dirs(argv: Sequence[str]) -> None:
    """Exit 1 (Hydra's status for a config it cannot compose) on a YAML syntax error."""
    for directory in config_dirs(argv):
        problem = yaml_problem(directory) if directory.is_dir() else None
        if problem:
            print(f"[ERROR] {problem}", file=sys.stderr, flush=True)
            sys.exit(1)
