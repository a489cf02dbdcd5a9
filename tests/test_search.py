"""hparams_search=kd_optuna: a real Optuna search (hydra-optuna-sweeper) of a few smoke-sized
trials that selects on val_acc, never on a test number; diverged trials are Optuna failures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kdrun.cli.main import search_objective
from kdrun.report.winner import pm
from tests.conftest import SMOKE_FAST, load_script
from tests.test_cli import KDRUN

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs kdrun[search]")

SEARCH = [
    *[o for o in SMOKE_FAST if not o.startswith("student.steps")],
    "hparams_search=kd_optuna",
    "data.val_per_class=5",
    "pool=10",
    "soft_labels.views=0",
    "episodes=2",
    "student.steps=null",  # the budget is student.epochs passes, a searched key
    "student.min_steps=1",
    "hydra.sweeper.n_trials=3",
    "student.epochs=tag(log, int(interval(1, 4)))",  # a narrower range, for speed
]

# The same kdrun, with the synthetic test split's labels permuted after loading: a search whose
# objective never reads the test split picks the same trials with the same objective values.
CORRUPTED_TEST_LABELS = """
import sys, torch
from kdrun.data.registry import DATA_SOURCES
source = DATA_SOURCES["synthetic"]
load = source.load
def corrupted(cfg, cache):
    ds = load(cfg, cache)
    perm = torch.randperm(len(ds.test.labels), generator=torch.Generator().manual_seed(7))
    ds.test.labels = ds.test.labels[perm]
    return ds
source.load = corrupted
from kdrun.cli.main import main
sys.argv = ["kdrun", *sys.argv[1:]]
main()
"""


def _search(cwd: Path, *overrides: str, cache: Path, corrupt: bool = False):
    command = [sys.executable, "-c", CORRUPTED_TEST_LABELS] if corrupt else [KDRUN]
    return subprocess.run(
        [*command, *overrides],
        cwd=cwd,
        env={**os.environ, "KDRUN_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )


def _trials(sweep: Path) -> dict[str, dict]:
    """Each trial's record, by its searched settings."""
    out = {}
    for path in sorted(sweep.glob("[0-9]*/metrics.json")):
        record = json.loads(path.read_text())
        key = " ".join(
            sorted(o for o in record["overrides"] if o.startswith(("loss.", "student.")))
        )
        out[key] = record
    return out


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    proc = _search(root, *SEARCH, "hydra.sweep.dir=sweep", cache=root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


@pytest.mark.slow
def test_a_search_selects_on_the_mean_val_acc_and_summarises_val_beside_test(search):
    root, proc = search
    sweep = root / "sweep"
    assert "Traceback" not in proc.stderr + proc.stdout
    trials = _trials(sweep)
    assert len(trials) == 3
    for record in trials.values():  # each trial is an ordinary run dir, scored on both splits
        episodes = record["episodes"]
        assert len(episodes) == 2 and record["setting"]["val_per_class"] == 5
        mean = sum(e["student"]["val_acc"] for e in episodes) / 2
        assert search_objective(record) == pytest.approx(mean)
        assert "test_acc" in record["student"] and "val_acc" in record["baseline"]
    assert sum(r["teacher"]["source"] == "trained" for r in trials.values()) == 1  # one teacher
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    best = max(trials.values(), key=lambda r: r["student"]["val_acc"])
    assert results.best_value == pytest.approx(best["student"]["val_acc"])
    chosen = {f"{k}={v}" for k, v in results.best_params.items()}
    assert chosen <= set(best["overrides"])
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    vals = [float(r["student_val_acc"]) for r in rows]
    assert vals == sorted(vals, reverse=True) and all(r["student_acc"] for r in rows)
    assert "student val %" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_the_objective_never_sees_test_labels(search, tmp_path):
    root, _ = search
    proc = _search(tmp_path, *SEARCH, "hydra.sweep.dir=sweep", cache=tmp_path / "c", corrupt=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clean, corrupted = _trials(root / "sweep"), _trials(tmp_path / "sweep")
    assert clean.keys() == corrupted.keys()  # the same trials were proposed, in the same order
    for key, record in clean.items():
        assert corrupted[key]["student"]["val_acc"] == record["student"]["val_acc"]
    # ... while the test numbers did change: the corruption reached the test split
    assert any(
        corrupted[k]["student"]["test_acc"] != r["student"]["test_acc"] for k, r in clean.items()
    )
    for name in ("optimization_results.yaml",):
        assert (tmp_path / "sweep" / name).read_text() == (root / "sweep" / name).read_text()


@pytest.mark.slow
def test_a_diverged_trial_is_an_optuna_failure_never_a_score(search, tmp_path):
    root, _ = search
    # TPE seeded 0 starts with random draws: lr 1e6 (diverges), then 0.02
    diverging = [
        "hydra.sweeper.n_trials=2",
        "student.grad_clip=0",
        "loss.temperature=4.0",  # fixed on the command line: out of the search space
        "loss.alpha=0.9",
        "student.epochs=2",
        "student.lr=choice(0.02,1e6)",
    ]
    base = [o for o in SEARCH if not o.startswith(("student.epochs", "hydra.sweeper.n_trials"))]
    # -m first (argparse): a choice() on the command line needs it even under hparams_search
    proc = _search(tmp_path, "-m", *base, *diverging, "hydra.sweep.dir=sweep", cache=root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "Failed experiment: Return value must be float-castable. Got 'None'"
        in proc.stdout + proc.stderr
    )
    statuses = {
        json.loads(p.read_text()).get("status", "ok")
        for p in (tmp_path / "sweep").glob("*/metrics.json")
    }
    assert statuses == {"ok", "diverged"}
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_params["student.lr"] == 0.02


@pytest.mark.slow
def test_a_search_without_a_validation_split_is_refused_before_any_trial(tmp_path):
    proc = _search(tmp_path, *SEARCH, "data.val_per_class=0", "hydra.sweep.dir=s", cache=tmp_path)
    assert proc.returncode == 2
    assert "data.val_per_class=0 cannot drive a search" in proc.stderr
    assert "No trial was started." in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "s").glob("*/metrics.json"))


def _winner(root: Path, *args: str) -> subprocess.CompletedProcess:
    """kdrun-winner on the `search` fixture's sweep, from the console script."""
    return subprocess.run(
        [str(Path(KDRUN).with_name("kdrun-winner")), str(root / "sweep"), *args],
        cwd=root,
        env={**os.environ, "KDRUN_CACHE_DIR": str(root / "cache")},
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )


@pytest.mark.slow
def test_the_winner_is_reported_on_fresh_episodes_beside_the_defaults(search):
    root, _ = search
    sweep = root / "sweep"
    proc = _winner(root, "--episodes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(
        (sweep / "evaluation" / "seed100-episodes2" / "evaluation.json").read_text()
    )
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert report["best_params"] == OmegaConf.to_container(results.best_params)
    assert report["seeds"] == [100, 100 + 1_000_003]  # none of the search's (0, 1000003)
    runs = {
        k: json.loads((Path(v) / "metrics.json").read_text()) for k, v in report["runs"].items()
    }
    chosen = {f"{k}={v}" for k, v in results.best_params.items()}
    assert chosen <= set(runs["winner"]["overrides"])
    assert not any(
        o.startswith(("loss.alpha", "loss.temperature")) for o in runs["defaults"]["overrides"]
    )
    for role in ("winner", "defaults"):
        per_episode = [e["student"]["test_acc"] for e in runs[role]["episodes"]]
        assert report[role]["per_episode"] == per_episode
        assert runs[role]["teacher"]["source"] == "cache"  # the search's teacher
    diff = [
        a - b
        for a, b in zip(
            report["winner"]["per_episode"], report["defaults"]["per_episode"], strict=True
        )
    ]
    assert report["difference"]["per_episode"] == pytest.approx(diff)
    assert "winner - defaults, paired:" in proc.stdout

    # The README's table reads the same search and evaluation back.
    table, *_ = load_script("search_table").rows("smoke", sweep)
    assert (table["trials"], table["failed"], table["episodes"]) == (3, 0, 2)
    assert table["search_val"] == pytest.approx(100 * results.best_value)
    mean, ci = (100 * report["difference"][k] for k in ("mean", "ci95"))
    assert table["difference"] == f"{mean:+.1f} ± {ci:.1f}"
    assert table["search_cpu_min"] > 0 and table["eval_cpu_min"] > 0

    # One budget for both (--set): the chosen budget gives way, and the table gains a row.
    proc = _winner(root, "--episodes", "2", "--set", "student.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "both runs with student.epochs=2 (--set)" in proc.stdout
    fixed = sweep / "evaluation" / "seed100-episodes2-student.epochs_2"
    report = json.loads((fixed / "evaluation.json").read_text())
    assert report["set"] == ["student.epochs=2"]
    for role in ("winner", "defaults"):
        overrides = json.loads((fixed / role / "metrics.json").read_text())["overrides"]
        assert [o for o in overrides if o.startswith("student.epochs")] == ["student.epochs=2"]
    plain, at_two = load_script("search_table").rows("smoke", sweep)
    assert plain == table and at_two["name"] == "smoke, both at student.epochs=2"
    assert at_two["winner"] == pm(report["winner"]) and at_two["chosen"] == table["chosen"]


def test_a_setting_for_both_runs_replaces_the_searched_one_and_names_the_evaluation(search):
    from kdrun.report.winner import check_fixed, evaluation_name, read_selection, run_overrides

    root, _ = search
    selection = read_selection(root / "sweep")
    fixed = check_fixed(["student.epochs=7"])
    winner = run_overrides(selection, 100, 2, True, fixed)
    defaults = run_overrides(selection, 100, 2, False, fixed)
    for overrides in (winner, defaults):
        assert [o for o in overrides if o.startswith("student.epochs")] == ["student.epochs=7"]
    chosen = {f"{k}={v}" for k, v in selection.best_params.items() if k != "student.epochs"}
    assert chosen and set(winner) - set(defaults) == chosen
    assert evaluation_name(100, 2, fixed) == "seed100-episodes2-student.epochs_7"
    assert evaluation_name(100, 2, []) == "seed100-episodes2"
    for bad, words in (("student.epochs", "KEY=VALUE"), ("seed=3", "sets seed itself")):
        with pytest.raises(ValueError, match=words):
            check_fixed([bad])


def test_a_set_key_no_config_has_is_refused_before_any_run(search, capsys):
    from kdrun.cli.winner import main as winner_main

    root, _ = search
    assert winner_main([str(root / "sweep"), "--set", "student.epohcs=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdrun-winner: ") and "student.epohcs" in err
    assert "student.epochs" in err  # the key it resembles
    assert not (root / "sweep" / "evaluation" / "seed100-episodes5-student.epohcs_3").exists()


def test_the_evaluation_refuses_episodes_the_search_tuned_on(search):
    from kdrun.report.winner import fresh_seed, read_selection

    root, _ = search
    selection = read_selection(root / "sweep")
    assert fresh_seed(selection, 100, 5) == 100
    with pytest.raises(ValueError, match="include the search's own"):
        fresh_seed(selection, 0, 5)
    with pytest.raises(ValueError, match="include the search's own"):
        fresh_seed(selection, 1_000_003, 2)  # its first episode is the search's second
