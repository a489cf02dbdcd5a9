"""A finished record is reused only when it proves its inputs (issue 22, class 1), and nothing
kdrun reads is opened unless it is a regular file of plausible size (class 4)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from kdrun.cli.report import main as report_main
from kdrun.data import get_source
from kdrun.errors import ConfigError
from kdrun.models import build_model
from kdrun.stages.teacher_checkpoint import checkpoint_digest, load_checkpoint
from kdrun.store.cache import ArtifactCache
from kdrun.store.record import verify_record
from kdrun.store.storage import regular_file
from tests.conftest import SMOKE_FAST
from tests.test_bad_input import _tree, run_cli


def _reused(run_dir: Path) -> bool:
    return "reusing it" in (run_dir / "kdrun.log").read_text()


def _save_teacher(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    torch.save(build_model("cnn_small", 10).state_dict(), path)


@pytest.mark.slow
def test_a_replaced_teacher_checkpoint_redoes_the_run(tmp_path, monkeypatch):
    ckpt, run_dir = tmp_path / "teacher.pt", tmp_path / "run"
    _save_teacher(ckpt, 0)
    args = [*SMOKE_FAST, f"teacher.checkpoint={ckpt}", f"cache_dir={tmp_path / 'cache'}"]
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    first = verify_record(run_dir).record
    assert first["inputs"]["teacher_checkpoint"] == checkpoint_digest(str(ckpt))

    assert run_cli(args, run_dir, monkeypatch).rc == 0  # same file: reused
    assert _reused(run_dir)

    _save_teacher(ckpt, 1)  # another teacher at the same path
    (run_dir / "kdrun.log").unlink()
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    log = (run_dir / "kdrun.log").read_text()
    assert not _reused(run_dir) and "the teacher checkpoint changed" in log
    second = verify_record(run_dir).record
    assert second["inputs"]["teacher_checkpoint"] != first["inputs"]["teacher_checkpoint"]
    assert (run_dir / "metrics.json.stale").exists()


@pytest.mark.slow
def test_changed_images_under_data_root_redo_the_run(tmp_path, monkeypatch):
    root, run_dir = _tree(tmp_path / "data", ("a", "b"), train=8, test=2), tmp_path / "run"
    args = [
        "experiment=smoke",
        "data=folder",
        f"data.root={root}",
        "ways=2",
        "shots=1",
        "pool=2",
        "teacher.epochs=1",
        "student.steps=2",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    first = verify_record(run_dir).record["inputs"]["data"]
    image = root / "train/a/0.png"
    image.write_bytes((root / "train/b/1.png").read_bytes())  # same path, other pixels
    later = time.time() + 5
    os.utime(image, (later, later))
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    assert "the data changed" in (run_dir / "kdrun.log").read_text()
    assert verify_record(run_dir).record["inputs"]["data"] != first


@pytest.mark.slow
def test_a_record_without_proof_of_its_inputs_is_redone(tmp_path, monkeypatch):
    from kdrun.store.record import write_record

    run_dir = tmp_path / "run"
    args = [*SMOKE_FAST, f"cache_dir={tmp_path / 'cache'}"]
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    record = verify_record(run_dir).record
    del record["inputs"]  # as an older kdrun wrote it, checksum and all
    write_record(run_dir, record, OmegaConf.create(record["config"]), record["overrides"], None)
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    assert "no proof of its inputs" in (run_dir / "kdrun.log").read_text()
    assert "inputs" in verify_record(run_dir).record


@pytest.mark.parametrize("source", ["folder", "synthetic"])
def test_the_cheap_data_identity_is_the_loaded_sets(tmp_path, source):
    """The proof checked before a run is the identity the run records after decoding."""
    root = _tree(tmp_path / "data", ("a", "b"), train=3, test=1)
    cfg = OmegaConf.create(
        {"source": "folder", "root": str(root), "image_size": 16}
        if source == "folder"
        else {
            "source": "synthetic",
            "num_classes": 2,
            "train_per_class": 3,
            "test_per_class": 1,
            "image_size": 16,
            "synthetic_seed": 0,
        }
    )
    src = get_source(source)
    assert src.identity(cfg) == src.load(cfg, ArtifactCache(tmp_path / "c")).identity


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "make,kind",
    [
        (lambda d: _fifo(d / "ckpt.pt"), "named pipe"),
        (lambda d: Path("/dev/zero"), "character device"),
        (lambda d: d, "directory"),
    ],
    ids=["fifo", "dev-zero", "directory"],
)
def test_a_checkpoint_that_never_ends_is_refused_unopened(tmp_path, make, kind):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=f"teacher.checkpoint={path} is a {kind}"):
        load_checkpoint(str(path), "cnn_small", 10)


def test_a_huge_file_is_refused_by_size_unread(tmp_path):
    big = tmp_path / "big.pt"
    with open(big, "wb") as f:
        f.truncate(2 << 20)  # sparse: nothing is written
    with pytest.raises(ConfigError, match="more than the 1 MiB"):
        regular_file(big, "teacher.checkpoint", 1 << 20)


def test_a_fifo_checkpoint_through_the_cli_exits_2_in_one_paragraph(tmp_path, monkeypatch):
    fifo = _fifo(tmp_path / "ckpt.pt")
    args = [*SMOKE_FAST, f"teacher.checkpoint={fifo}", f"cache_dir={tmp_path / 'cache'}"]
    out = run_cli(args, tmp_path / "run", monkeypatch)
    assert out.rc == 2 and "named pipe (FIFO), not a regular file" in out.err
    assert "Traceback" not in out.err + out.out


def test_report_refuses_a_fifo_metrics_json_without_hanging(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    _fifo(tmp_path / "run" / "metrics.json")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "named pipe" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_fifo_in_the_cache_is_moved_aside_not_read(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.path("teacher", "k")
    path.parent.mkdir(parents=True)
    _fifo(path)
    (path.parent / "k.pt.sum").write_text(json.dumps({"size": 0, "sha256": ""}))
    assert cache.load("teacher", "k") is None
    assert (path.parent / "k.pt.corrupt").exists()


def test_a_record_written_by_other_code_is_redone(tmp_path, monkeypatch):
    """Same config, data and version string, but kdrun's source changed since (a fix between two
    commits): the record names the code as what changed and the run is redone."""
    from kdrun.store import code_identity
    from kdrun.store.record import write_record

    run_dir = tmp_path / "run"
    args = [*SMOKE_FAST, f"cache_dir={tmp_path / 'cache'}"]
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    record = verify_record(run_dir).record
    assert record["inputs"]["code"] == code_identity.running_source_digest()
    record["inputs"]["code"] = "0" * 64  # as another commit of kdrun wrote it
    write_record(run_dir, record, OmegaConf.create(record["config"]), record["overrides"], None)
    assert run_cli(args, run_dir, monkeypatch).rc == 0
    assert "kdrun's code changed since it was written" in (run_dir / "kdrun.log").read_text()
    assert not _reused(run_dir)
    assert verify_record(run_dir).record["inputs"]["code"] == code_identity.running_source_digest()


def test_the_source_digest_follows_every_file_and_its_path(tmp_path):
    from kdrun.store.code_identity import source_digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = source_digest(tmp_path)
    assert source_digest(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not code")
    assert source_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    edited = source_digest(tmp_path)
    assert edited != first
    (tmp_path / "pkg" / "a.py").rename(tmp_path / "a2.py")
    assert source_digest(tmp_path) != edited
