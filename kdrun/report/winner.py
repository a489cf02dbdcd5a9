"""An honest report of a search's winner: what the search selected (Optuna's
optimization_results.yaml and a trial's .hydra/ files), fresh episodes no trial saw, and the
paired comparison of the winner with the defaults on them (`kdrun-winner`, docs/search.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from kdrun.data.fewshot import episode_seed
from kdrun.measure.metrics import mean_ci

RESULTS = "optimization_results.yaml"  # written by hydra-optuna-sweeper at the sweep root
TRIAL_HYDRA = ".hydra/hydra.yaml"  # each trial's Hydra config: the search's overrides, sweeper
TRIAL_CONFIG = ".hydra/config.yaml"  # each trial's composed config: seed, episodes, val split
# Overrides the evaluation sets itself (or that name the sweep's own directories).
OWN = ("seed=", "episodes=", "hydra.", "hparams_search=", "data.val_per_class=")


@dataclass(frozen=True)
class Selection:
    """What a search chose and under which fixed settings; `base` reproduces the search's
    runs minus the searched keys, so `base` alone is "the defaults" of the same setting."""

    sweep_dir: Path
    best_params: dict[str, object]
    best_value: float
    base: list[str]
    search: str | None  # the hparams_search option, kept for what it fixes (loss, val split)
    seed: int
    episodes: int
    val_per_class: int


def _key(override: str) -> str:
    """The key an override sets (`+a.b=1`, `~a.b` → `a.b`)."""
    return override.split("=", 1)[0].lstrip("+~")


def read_selection(sweep_dir: Path) -> Selection:
    """The search's choice and settings; ValueError in one sentence if the dir is no search."""
    results = sweep_dir / RESULTS
    trials = sorted(p.parents[1] for p in sweep_dir.glob(f"*/{TRIAL_HYDRA}"))
    if not results.is_file() or not trials:
        raise ValueError(
            f"{sweep_dir} is not a finished search: give the root of one "
            f"(kdrun hparams_search=kd_optuna ...), which holds {RESULTS} and its trials' dirs."
        )
    best = OmegaConf.to_container(OmegaConf.load(results))
    if "best_params" not in best:
        raise ValueError(f"{results} has no best_params (a multi-objective study?)")
    hydra = OmegaConf.load(trials[0] / TRIAL_HYDRA).hydra
    cfg = OmegaConf.load(trials[0] / TRIAL_CONFIG)  # the searched keys differ, the rest not
    # Optuna's best_params names exactly the searched keys; a key of the config's search
    # space fixed on the command line (loss.alpha=0.9) is not among them, and stays fixed.
    searched = set(best["best_params"])
    task = [str(o) for o in hydra.overrides.task]
    search = next((o.split("=", 1)[1] for o in task if o.startswith("hparams_search=")), None)
    base = [o for o in task if not o.startswith(OWN) and _key(o) not in searched]
    return Selection(
        sweep_dir=sweep_dir,
        best_params=dict(best["best_params"]),
        best_value=float(best["best_value"]),
        base=base,
        search=search,
        seed=int(cfg.seed),
        episodes=int(cfg.episodes),
        val_per_class=int(cfg.data.val_per_class),
    )


def episode_seeds(seed: int, episodes: int) -> list[int]:
    return [episode_seed(seed, e) for e in range(episodes)]


def fresh_seed(selection: Selection, offset: int, episodes: int) -> int:
    """The evaluation's `seed`: the search's plus `offset`, refused (ValueError) if any of
    its episodes is one the search tuned on."""
    seed = selection.seed + offset
    shared = set(episode_seeds(seed, episodes)) & set(
        episode_seeds(selection.seed, selection.episodes)
    )
    if offset == 0 or shared:
        raise ValueError(
            f"--seed-offset {offset} gives seed={seed}, whose episodes include the search's own "
            f"(episode seeds {sorted(shared) or episode_seeds(seed, 1)}); pick an offset that "
            "draws fresh episodes, e.g. 100."
        )
    return seed


def check_fixed(fixed: list[str]) -> list[str]:
    """`kdrun-winner --set KEY=VALUE`: settings both runs share, e.g. one budget for both so
    that what the search chose is told apart from how long it trained; ValueError if one is
    not KEY=VALUE or is a key the evaluation sets itself."""
    for override in fixed:
        if "=" not in override or not _key(override):
            raise ValueError(f"--set {override!r}: give KEY=VALUE, e.g. --set student.epochs=160")
        if override.startswith(OWN):
            raise ValueError(
                f"--set {override}: kdrun-winner sets {_key(override)} itself (the fresh "
                "episodes: --episodes, --seed-offset; the search's validation split)"
            )
    return fixed


def evaluation_name(seed: int, episodes: int, fixed: Sequence[str]) -> str:
    """The evaluation's directory: its episodes, and any --set, made path- and Hydra-safe."""
    tag = "".join("-" + re.sub(r"[^A-Za-z0-9._]+", "_", o) for o in fixed)
    return f"seed{seed}-episodes{episodes}{tag}"


def run_overrides(
    selection: Selection, seed: int, episodes: int, winner: bool, fixed: Sequence[str] = ()
) -> list[str]:
    """One ordinary run (not a search) of the winner's settings or of the defaults, on the
    fresh episodes, with the search's fixed settings (same teacher, same validation split)
    and `fixed` (kdrun-winner --set), which overrides a searched or fixed key of the same name."""
    keys = {_key(o) for o in fixed}
    chosen = [f"{k}={v}" for k, v in selection.best_params.items() if winner and k not in keys]
    search = [f"hparams_search={selection.search}", "hydra.mode=RUN"] if selection.search else []
    return [
        *search,
        *(o for o in selection.base if _key(o) not in keys),
        f"data.val_per_class={selection.val_per_class}",
        f"seed={seed}",
        f"episodes={episodes}",
        *chosen,
        *fixed,
    ]


def paired_comparison(winner: dict, defaults: dict) -> dict:
    """Test accuracies with 95% CIs and the per-episode difference winner - defaults with its
    CI; the two records must hold the same episodes (same seeds, same shots)."""
    pairs = list(zip(winner["episodes"], defaults["episodes"], strict=True))
    for w, d in pairs:
        if w["seed"] != d["seed"] or w["shot_indices"] != d["shot_indices"]:
            raise ValueError(f"episode seeds {w['seed']} and {d['seed']} drew different shots")
    w_acc = [w["student"]["test_acc"] for w, _ in pairs]
    d_acc = [d["student"]["test_acc"] for _, d in pairs]
    diff = [a - b for a, b in zip(w_acc, d_acc, strict=True)]
    return {
        "episodes": len(pairs),
        "seeds": [w["seed"] for w, _ in pairs],
        "winner": {"per_episode": w_acc, **mean_ci(w_acc)},
        "defaults": {"per_episode": d_acc, **mean_ci(d_acc)},
        "baseline": mean_ci([d["baseline"]["test_acc"] for _, d in pairs]),
        "difference": {"per_episode": diff, **mean_ci(diff)},
    }


def pm(stats: dict, sign: str = "") -> str:
    """A `mean_ci` fraction as "mean ± ci95" in percent; sign="+" for a difference."""
    return f"{100 * stats['mean']:{sign}.1f} ± {100 * stats['ci95']:.1f}"


def describe(selection: Selection, comparison: dict, fixed: Sequence[str] = ()) -> list[str]:
    """The result in a few lines, accuracies in percent with their 95% CIs."""
    chosen = " ".join(f"{k}={v}" for k, v in selection.best_params.items())
    n, seeds = comparison["episodes"], comparison["seeds"]
    both = [f"both runs with {' '.join(fixed)} (--set)"] if fixed else []
    return [
        f"winner of {selection.sweep_dir}: {chosen} (search val_acc {selection.best_value:.4f})",
        *both,
        f"fresh episodes: {n} (seeds {', '.join(map(str, seeds))}); test accuracy, mean ± 95% CI:",
        f"  winner   {pm(comparison['winner'])}",
        f"  defaults {pm(comparison['defaults'])}",
        f"  baseline {pm(comparison['baseline'])} (CE on the shots)",
        f"  winner - defaults, paired: {pm(comparison['difference'], '+')} pts",
    ]
