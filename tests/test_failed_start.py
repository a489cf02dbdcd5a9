"""A run refused before any work removes the run directory it created, and only that: never a
directory that existed before, nor one holding anything but the start's own files. (Every
refusal of tests/test_bad_input.py also checks that no run directory is left.)"""

from __future__ import annotations

from pathlib import Path

from kdrun.store.output_dir import LOCK_NAME, START_FILES, check_output_dir, discard_refused_run


def _start_files(run_dir: Path) -> None:
    """What Hydra and kdrun write into a run directory before the run does any work."""
    for name in [*START_FILES, LOCK_NAME]:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("x\n")


def test_a_refused_run_removes_its_run_dir_and_the_parents_it_created(tmp_path):
    (tmp_path / "outputs" / "cache").mkdir(parents=True)  # not this run's: it stays
    run_dir = tmp_path / "outputs" / "2026-01-01" / "10-00-00"
    check_output_dir(str(run_dir), "hydra.run.dir")
    _start_files(run_dir)
    assert discard_refused_run(run_dir)
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["cache"]


def test_a_run_dir_that_existed_before_is_kept(tmp_path):
    run_dir = tmp_path / "pinned"
    run_dir.mkdir()
    check_output_dir(str(run_dir), "hydra.run.dir")
    _start_files(run_dir)
    assert not discard_refused_run(run_dir)
    assert (run_dir / "kdrun.log").exists()


def test_a_run_dir_holding_anything_else_is_kept_whole(tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    check_output_dir(str(run_dir), "hydra.run.dir")
    _start_files(run_dir)
    (run_dir / "notes.txt").write_text("mine\n")
    assert not discard_refused_run(run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {"notes.txt", "kdrun.log", ".hydra"}
