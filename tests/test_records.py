"""A sweep or report row always describes the run that produced its numbers: records that do
not verify are redone or reported, and a multirun's summary covers exactly its own jobs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

import kdrun.cli.main
import kdrun.pipeline
from kdrun.cli.report import main as report_main
from kdrun.report.runs_summary import collect, to_csv, to_markdown
from kdrun.report.sweep import multirun_rows
from kdrun.store.record import read_manifest, verify_record, write_record
from tests.conftest import SMOKE_FAST
from tests.test_bad_input import run_cli
from tests.test_summary import fake_run


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache for the module: the teacher and soft labels are built once."""
    return tmp_path_factory.mktemp("cache")


def args(cache: Path, *extra: str) -> list[str]:
    return [*SMOKE_FAST, f"cache_dir={cache}", *extra]


def log_of(run_dir: Path) -> str:
    return (run_dir / "kdrun.log").read_text()


def warnings(run_dir: Path) -> list[str]:
    """Warnings about the record (a smoke run's short budget also warns it has not converged)."""
    lines = log_of(run_dir).splitlines()
    return [line for line in lines if "[WARNING]" in line and "not converged" not in line]


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache) -> Path:
    """A verified single run, copied by each test that damages it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as mp:
        assert run_cli(args(cache), run_dir, mp).rc == 0
    return run_dir


@pytest.fixture(scope="module")
def sweep_a(tmp_path_factory, cache) -> Path:
    """A finished two-job multirun (shots=1,2), copied by the tests that re-use its dir."""
    sweep_dir = tmp_path_factory.mktemp("sweep_a") / "sweep"
    with pytest.MonkeyPatch.context() as mp:
        assert run_cli(["-m", *args(cache, "shots=1,2")], sweep_dir, mp).rc == 0
    return sweep_dir


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_number(run_dir: Path) -> None:
    record = json.loads((run_dir / "metrics.json").read_text())
    record["student"]["test_acc"] = 0.99
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))


@pytest.mark.parametrize(
    "damage,reason",
    [
        (edit_number, "checksum does not match"),
        (lambda d: (d / "student.pt").unlink(), "student.pt is missing"),
        (lambda d: (d / "history.csv").write_text("edited\n"), "history.csv differs"),
    ],
    ids=["edited-number", "deleted-student-pt", "edited-history"],
)
@pytest.mark.slow
def test_a_record_that_does_not_verify_is_redone_with_one_warning(
    tmp_path, cache, finished, monkeypatch, damage, reason
):
    run_dir = copy(finished, tmp_path / "run")
    before = json.loads((run_dir / "metrics.json").read_text())
    damage(run_dir)
    assert run_cli(args(cache), run_dir, monkeypatch).rc == 0
    (warning,) = warnings(run_dir)
    assert reason in warning and "metrics.json.stale" in warning
    assert log_of(run_dir).count("reusing it") == 0
    after = verify_record(run_dir)
    assert after.state == "ok", after.problem
    assert after.record["student"]["test_acc"] == before["student"]["test_acc"]
    assert (run_dir / "student.pt").exists() and (run_dir / "metrics.json.stale").exists()


def test_a_finished_run_moved_elsewhere_is_reused_and_names_its_new_dir(
    tmp_path, cache, finished, monkeypatch
):
    run_dir = copy(finished, tmp_path / "moved")
    before = verify_record(run_dir).record
    assert before["out_dir"] == str(finished)
    out = run_cli(args(cache), run_dir, monkeypatch)
    assert out.rc == 0 and "reusing it" in log_of(run_dir)
    after = verify_record(run_dir)
    assert after.state == "ok", after.problem
    assert after.record["out_dir"] == str(run_dir)  # the end-of-run table prints this
    assert after.record["student"] == before["student"]


@pytest.mark.parametrize(
    "text", ["null", "[]", '{"teacher": {"test_acc": 0.5}}', '{"student": '], ids=str
)
@pytest.mark.slow
def test_a_foreign_metrics_json_is_reported_in_one_line_and_the_run_redone(
    tmp_path, cache, finished, monkeypatch, capsys, text
):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text(text)
    good = copy(finished, tmp_path / "good")

    out = tmp_path / "report"
    assert report_main([str(bad), str(good), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad / "metrics.json") in err[0]
    assert [r["run_dir"] for r in rows_of(out / "summary.csv")] == [str(good)]

    assert run_cli(args(cache), bad, monkeypatch).rc == 0
    assert len(warnings(bad)) == 1
    assert verify_record(bad).state == "ok"
    assert (bad / "metrics.json.stale").read_text() == text


def test_a_diverged_record_is_a_row_with_its_status_and_no_numbers(tmp_path, capsys):
    fake_run(tmp_path / "0", ["loss.alpha=0.5"], 0.4)
    fake_run(tmp_path / "1", ["loss.alpha=0.9"], 0.0, status="diverged")
    rows = collect([tmp_path])
    assert [(r.overrides, r.status) for r in rows] == [
        ("loss.alpha=0.5", "ok"),
        ("loss.alpha=0.9", "diverged"),
    ]
    assert rows[1].student_acc is None and rows[1].kd_gain is None
    assert "| loss.alpha=0.9 |" + "  |" * 10 + " diverged |" in to_markdown(rows)
    row = ",loss.alpha=0.9,diverged" + "," * 18 + "synthetic" + "," * 14  # data; cost, val
    assert to_csv(rows).splitlines()[2].endswith(row)

    out = tmp_path / "report"
    assert report_main([str(tmp_path / "0"), str(tmp_path / "1"), "--out", str(out)]) == 0
    assert [r["status"] for r in rows_of(out / "summary.csv")] == ["ok", "diverged"]


def test_an_older_record_without_checksum_is_unverified_without_numbers(tmp_path):
    run_dir = fake_run(tmp_path / "0", ["shots=1"], 0.4)
    record = json.loads((run_dir / "metrics.json").read_text())
    del record["checksum"]
    (run_dir / "metrics.json").write_text(json.dumps(record))
    (row,) = collect([tmp_path])
    assert row.status == "unverified" and row.student_acc is None


def kill_job(num: int):
    """finished_metrics that dies in job `num`, as a SIGKILL would just after Hydra wrote the
    job's .hydra/ files: the rest of this process (the sweep) ends with it."""
    real = kdrun.cli.main.finished_metrics

    def finished_metrics(out_dir, cfg):
        if HydraConfig.get().job.num == num:
            raise SystemExit(137)
        return real(out_dir, cfg)

    return finished_metrics


@pytest.mark.slow  # an end-to-end process test: minutes on a loaded 2-core machine
def test_a_killed_job_in_a_reused_sweep_dir_is_missing_not_the_old_numbers(
    tmp_path, cache, sweep_a, monkeypatch
):
    sweep_dir = copy(sweep_a, tmp_path / "sweep")
    sweep_b = ["-m", *args(cache, "shots=3,4")]
    with monkeypatch.context() as mp:
        mp.setattr(kdrun.cli.main, "finished_metrics", kill_job(1))
        assert run_cli(sweep_b, sweep_dir, mp).rc == 137
    assert "shots=4" in (sweep_dir / "1" / ".hydra" / "overrides.yaml").read_text()

    # Every row says what its own record says: job 1 still holds sweep A's shots=2 run.
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "report")]) == 0
    report = {r["run_dir"]: r["overrides"] for r in rows_of(tmp_path / "report" / "summary.csv")}
    assert report[str(sweep_dir / "1")].endswith("shots=2")
    assert report[str(sweep_dir / "0")].endswith("shots=3")

    # The summary of the killed multirun: job 1 is missing, with sweep B's overrides.
    rows = {r.run_dir: r for r in multirun_rows(sweep_dir, read_manifest(sweep_dir))}
    assert rows[str(sweep_dir / "1")].status == "missing"
    assert rows[str(sweep_dir / "1")].overrides.endswith("shots=4")
    assert rows[str(sweep_dir / "1")].student_acc is None
    assert rows[str(sweep_dir / "0")].status == "ok"

    # Run again: job 0 is reused, job 1's stale record is moved aside (one WARNING) and redone.
    assert run_cli(sweep_b, sweep_dir, monkeypatch).rc == 0
    assert "reusing it" in log_of(sweep_dir / "0")
    assert len(warnings(sweep_dir / "0")) == 1  # in the killed run, for sweep A's shots=1 record
    (warning,) = warnings(sweep_dir / "1")
    assert "another config" in warning
    summary = rows_of(sweep_dir / "summary.csv")
    assert sorted(r["overrides"].split()[-1] for r in summary) == ["shots=3", "shots=4"]
    assert {r["status"] for r in summary} == {"ok"}


@pytest.mark.slow
def test_a_smaller_sweep_in_a_reused_dir_summarises_only_its_own_jobs(
    tmp_path, cache, sweep_a, monkeypatch
):
    sweep_dir = copy(sweep_a, tmp_path / "sweep")
    assert len(rows_of(sweep_dir / "summary.csv")) == 2
    assert run_cli(["-m", *args(cache, "shots=2")], sweep_dir, monkeypatch).rc == 0
    (row,) = rows_of(sweep_dir / "summary.csv")
    assert row["overrides"].endswith("shots=2") and row["status"] == "ok"
    assert row["run_dir"] == str(sweep_dir / "0")


def test_a_diverged_job_is_a_summary_row_with_its_status_and_no_numbers(
    tmp_path, cache, sweep_a, monkeypatch
):
    """Job 1 diverges (its record, as a diverged run writes it); the sweep still ends normally."""
    sweep_dir = copy(sweep_a, tmp_path / "sweep")
    real = kdrun.pipeline.run

    def run(cfg, out_dir):
        if HydraConfig.get().job.num != 1:
            return real(cfg, out_dir)
        metrics = {"status": "diverged", "error": "student loss became nan at step 3"}
        return write_record(out_dir, metrics, cfg)

    monkeypatch.setattr(kdrun.pipeline, "run", run)
    assert run_cli(["-m", *args(cache, "shots=1,3")], sweep_dir, monkeypatch).rc == 0
    rows = {r["run_dir"]: r for r in rows_of(sweep_dir / "summary.csv")}
    assert rows[str(sweep_dir / "0")]["status"] == "ok"
    diverged = rows[str(sweep_dir / "1")]
    assert diverged["status"] == "diverged" and diverged["overrides"].endswith("shots=3")
    assert diverged["student_acc"] == diverged["kd_gain"] == ""
    assert "student loss became nan" in log_of(sweep_dir / "1")
