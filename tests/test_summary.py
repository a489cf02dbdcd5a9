"""Sweep summaries from run directories on disk, and the cache's one-builder lock."""

from __future__ import annotations

import csv
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from kdrun.cli.report import main as report_main
from kdrun.report.runs_summary import collect, draw, to_markdown, write_summary
from kdrun.store.cache import ArtifactCache, digest
from kdrun.store.record import write_record
from tests.conftest import compose_config

CFG = compose_config(["experiment=smoke"])


def fake_run(
    root: Path,
    overrides: list[str],
    student: float,
    baseline: float = 0.2,
    status: str = "ok",
    loss: str = "kd",
) -> Path:
    """A run directory with a checksummed record of these numbers and a small student.pt."""
    root.mkdir(parents=True)
    if status == "ok":
        torch.save({"w": torch.ones(2)}, root / "student.pt")
        metrics = {
            "teacher": {"test_acc": 0.8, "arch": "cnn_large"},
            "baseline": {"test_acc": baseline, "test_acc_ci95": 0.01},
            "student": {"test_acc": student, "test_acc_ci95": 0.02, "loss": loss},
            "kd_gain": student - baseline,
            "kd_gain_ci95": 0.015,
            "setting": {"episodes": 5, "ways": 10},
            "timing": {"total": 12.0},
        }
    else:
        metrics = {"status": status, "error": "loss became nan at step 3", "timing": {"total": 1.0}}
    write_record(root, metrics, CFG, overrides=overrides)
    return root


def test_collect_sorts_by_student_and_skips_unfinished(tmp_path):
    fake_run(tmp_path / "0", ["shots=1", "loss.alpha=0.5"], 0.3)
    fake_run(tmp_path / "1", ["shots=5", "loss.alpha=0.5"], 0.5)
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # a killed job: no metrics.json
    rows = collect([tmp_path])
    assert [r.overrides for r in rows] == ["shots=5 loss.alpha=0.5", "shots=1 loss.alpha=0.5"]
    md = to_markdown(rows)
    assert "50.0 ± 2.0" in md and "+30.0 ± 1.5" in md


def test_write_summary_makes_csv_markdown_and_plot(tmp_path):
    for i, (shots, alpha, acc) in enumerate(
        [(1, 0.5, 0.3), (2, 0.5, 0.4), (1, 0.9, 0.35), (2, 0.9, 0.45)]
    ):
        fake_run(tmp_path / "sweep" / str(i), [f"shots={shots}", f"loss.alpha={alpha}"], acc)
    paths = write_summary(collect([tmp_path / "sweep"]), tmp_path / "sweep")
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "summary.png"]
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert len(rows) == 4 and float(rows[0]["student_acc"]) == 0.45
    assert (tmp_path / "sweep" / "summary.png").read_bytes()[:4] == b"\x89PNG"


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_of_a_shots_sweep_has_integer_ticks_a_log_scale_and_a_title(tmp_path):
    for i, shots in enumerate((1, 2, 8)):
        fake_run(tmp_path / str(i), ["experiment=smoke", f"shots={shots}"], 0.3 + shots / 100)
    (ax,) = draw(collect([tmp_path])).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "8"]
    assert ax.get_xscale() == "log"  # 8 / 1 spans more than 4x
    assert ax.get_title(loc="left") == (
        "student accuracy vs shots\n"
        "experiment=smoke, loss=kd, teacher=cnn_large, 10-way, 5 episodes"
    )
    assert _legend(ax) == ["student loss=kd", "baseline (CE on the shots)"]


def test_plot_keeps_a_linear_scale_for_a_narrow_span_and_names_series_by_what_differs(tmp_path):
    runs = [(2, "kd", 0.4), (3, "kd", 0.5), (2, "dist", 0.45), (3, "dist", 0.55)]
    for i, (shots, loss, acc) in enumerate(runs):
        fake_run(tmp_path / str(i), [f"shots={shots}", f"loss={loss}"], acc, loss=loss)
    (ax,) = draw(collect([tmp_path])).axes
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "3"]
    assert ax.get_title(loc="left") == (
        "student accuracy vs shots, one line per loss\nteacher=cnn_large, 10-way, 5 episodes"
    )
    assert _legend(ax) == ["student loss=dist", "student loss=kd", "baseline (CE on the shots)"]


def test_report_combines_several_sweeps(tmp_path, capsys):
    fake_run(tmp_path / "a" / "0", ["shots=1"], 0.3)
    fake_run(tmp_path / "b" / "0", ["shots=5"], 0.5)
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert len(list(csv.DictReader((out / "summary.csv").open()))) == 2
    assert report_main([str(tmp_path / "nope")]) == 2


def _build_once(root: str, log_path: str) -> None:
    def build() -> dict:
        with open(log_path, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # long enough for the other process to find the lock taken
        return {"t": torch.ones(2)}

    ArtifactCache(Path(root)).get_or_build("kind", digest({"k": 1}), build)


@pytest.mark.slow
def test_only_one_process_builds_a_shared_entry(tmp_path):
    ctx = mp.get_context("spawn")
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_build_once, args=(str(tmp_path), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert log.read_text() == "built\n"


def test_a_new_summary_in_a_used_dir_leaves_no_file_of_the_old_one(tmp_path, capsys):
    """issue 22, class 2: an earlier summary.png must not stay beside a summary without a plot,
    for sweep summaries and for kdrun-report --out alike."""
    for i, shots in enumerate((1, 2)):
        fake_run(tmp_path / "a" / str(i), [f"shots={shots}"], 0.3 + i / 10)
    fake_run(tmp_path / "b" / "0", ["shots=1"], 0.3)  # one run: nothing varies, no plot
    out = tmp_path / "out"
    assert report_main([str(tmp_path / "a"), "--out", str(out)]) == 0
    assert (out / "summary.png").exists()
    assert report_main([str(tmp_path / "b"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.md"]
    assert len(list(csv.DictReader((out / "summary.csv").open()))) == 1
    write_summary(collect([tmp_path / "a"]), tmp_path / "a")
    paths = write_summary(collect([tmp_path / "b"]), tmp_path / "a")
    assert [p.name for p in paths] == ["summary.csv", "summary.md"]
    assert not (tmp_path / "a" / "summary.png").exists()


def test_report_rows_from_different_data_roots_say_their_data(tmp_path):
    """issue 22, class 7: equal overrides from two data roots must not print identically."""
    for i, root in enumerate(("/data/a", "/data/b")):
        cfg = compose_config(["data=folder", f"data.root={root}"])
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        torch.save({"w": torch.ones(2)}, run_dir / "student.pt")
        metrics = {
            "teacher": {"test_acc": 0.8},
            "baseline": {"test_acc": 0.2},
            "student": {"test_acc": 0.3},
            "kd_gain": 0.1,
            "timing": {"total": 1.0},
        }
        write_record(run_dir, metrics, cfg, overrides=["shots=1"])
    md = to_markdown(collect([tmp_path]))
    assert "shots=1 [data folder:/data/a]" in md and "shots=1 [data folder:/data/b]" in md
    fake_run(tmp_path / "x" / "0", ["shots=1"], 0.3)
    assert "[data" not in to_markdown(collect([tmp_path / "x"]))
