"""Measure few-shot distillation recipes on CIFAR-10 and print the README's table.

Every cell is one `kdrun` run of E episodes (mean ± 95% CI over episodes), sharing one cached
teacher; the wall time is that run's total on this machine.

    python scripts/fewshot_table.py --data-root /path/to/cifar10 [--shots 1 5 10 20]
        [--episodes 5] [--pool 500] [--views 4] [--mix none] [--out outputs/fewshot_table]
        [--skip K:RECIPE ...] [overrides ...]

Each row also gives the model's budget in steps and its convergence verdict (points gained
over the last half of its budget; "✓" below 1 point). `--skip 5:views` leaves out a row that
another run already measured (e.g. the default recipe, measured by the method sweep).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from kdrun.config import register_configs
from kdrun.pipeline import run


def recipes(pool: int, views: int, mix: str) -> dict[str, tuple[str, list[str]]]:
    view = [f"pool={pool}", f"soft_labels.views={views}", f"soft_labels.mix={mix}"]
    return {
        "KD, shots only": ("shots", ["pool=0", "soft_labels.views=0"]),
        f"KD + pool {pool}": ("pool", [f"pool={pool}", "soft_labels.views=0"]),
        f"KD + pool {pool}, {views} views" + (f" + {mix}" if mix != "none" else ""): (
            "views",
            view,
        ),
    }


def budget(model: dict) -> str:
    """Steps and the convergence verdict of one row: '3156 steps, +0.4 ✓'."""
    v = model.get("convergence") or {}
    gain = v.get("last_half_gain_pts")
    mark = "✓" if v.get("converged") else "not converged"
    return f"{v.get('steps', '?')} steps, {gain:+.1f} {mark}" if gain is not None else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--pool", type=int, default=500)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--mix", default="none")
    parser.add_argument("--out", default="outputs/fewshot_table")
    parser.add_argument("--skip", nargs="*", default=[], help="K:shots|pool|views rows to skip")
    parser.add_argument("overrides", nargs="*", help="extra kdrun overrides for every run")
    args = parser.parse_args()

    register_configs()
    out = Path(args.out)
    rows = []
    with initialize_config_module("kdrun.conf", version_base="1.3"):
        for shots in args.shots:
            baseline = None
            for name, (tag, extra) in recipes(args.pool, args.views, args.mix).items():
                if f"{shots}:{tag}" in args.skip:
                    continue
                overrides = [
                    f"data.root={args.data_root}",
                    "data.download=false",
                    f"shots={shots}",
                    f"episodes={args.episodes}",
                    *extra,
                    *args.overrides,
                ]
                cfg = compose("config", overrides=overrides)
                run_dir = out / f"k{shots}" / name.replace(" ", "_").replace(",", "")
                start = time.perf_counter()
                m = run(cfg, run_dir)
                wall = time.perf_counter() - start
                if baseline is None:
                    baseline = m["baseline"]
                    rows.append((shots, "baseline (CE)", baseline, None, m["timing"]["baseline"]))
                rows.append((shots, name, m["student"], m, wall))
                summary = {
                    "shots": shots,
                    "recipe": name,
                    "student": m["student"]["test_acc"],
                    "gain": m["kd_gain"],
                    "ci": m["kd_gain_ci95"],
                    "wall": wall,
                    "budget": budget(m["student"]),
                }
                print(json.dumps(summary), flush=True)

    lines = [
        "| K | recipe | student acc (mean ± 95% CI) | paired gain vs CE | budget, last-half gain"
        " | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for shots, name, model, m, wall in rows:
        acc = f"{100 * model['test_acc']:.1f} ± {100 * model['test_acc_ci95']:.1f}"
        gain = "" if m is None else f"{100 * m['kd_gain']:+.1f} ± {100 * m['kd_gain_ci95']:.1f}"
        lines.append(f"| {shots} | {name} | {acc} | {gain} | {budget(model)} | {wall:.0f} s |")
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
