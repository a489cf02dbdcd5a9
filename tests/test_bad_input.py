"""Every row of the bad-input tables (docs/configuration.md, docs/faults.md), run through the
CLI's own entry point.

Each case runs `kdrun.cli.main.main` in-process (Hydra's composition, error reporting and our
ConfigError handler, exactly as the console script runs them, at ~0.1 s instead of ~3.5 s per
process); `test_console_script_agrees` runs one case of each error class as a real process.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from PIL import Image

import kdrun.cli.main
from kdrun.models import build_model

DOCS = [
    Path(__file__).resolve().parents[1] / "docs" / page
    for page in ("configuration.md", "faults.md")
]
KDRUN = str(Path(sys.executable).with_name("kdrun"))
BASE = [
    "experiment=smoke",
    "data.train_per_class=60",
    "data.test_per_class=20",
    "teacher.epochs=1",
    "student.steps=5",
]
SYNTHETIC_ONLY = ("data.train_per_class=", "data.test_per_class=")
# A tiny folder run: 2 classes, no pool, no views, a few steps.
TINY = ["data=folder", "ways=2", "shots=2", "pool=0", "soft_labels.views=0", "student.steps=2"]
WORK_STARTED = ("decoding ", "] data: ", " step ")  # log lines of the stages after preflight


def _assert_absent(path: Path) -> None:
    """A failed download leaves none of the directories it created (e.g. data/cifar10/)."""
    assert not path.exists(), sorted(path.rglob("*"))


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    run_dir: Path

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Row:
    """One documented case: the overrides, the exit status and what the user must read."""

    row: str  # the first column of the docs table
    args: list[str]
    rc: int  # 1: Hydra refuses at composition; 2: kdrun's ConfigError; 0: handled, runs
    needle: str
    after_decode: bool = False  # refused only once decoding has found unreadable files
    check: Callable[[Outcome, dict[str, Path]], None] | None = None
    console: str = ""  # "fast" or "slow": also run as a real process, in that test tier
    env: dict[str, str] | None = None  # environment variables for this case
    hold_run_dir: bool = False  # a live run (this test process) holds hydra.run.dir's lock


def run_cli(args: list[str], run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """`kdrun ARGS` in this process; Hydra's global state and logging are restored after."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    argv = ["kdrun", *args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    # Hydra re-raises instead of reporting under a tracer (coverage, debuggers); users have none.
    monkeypatch.setattr("hydra._internal.utils.is_under_debugger", lambda: False)
    rc = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            kdrun.cli.main.main()
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # later tests must not see this run's Hydra config
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return Outcome(rc, out.getvalue(), err.getvalue(), run_dir)


def _images(d: Path, n: int, size=(32, 32), start: int = 0) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i}.png")


def _tree(root: Path, classes=("a", "b", "c"), train=6, test=2) -> Path:
    for c in classes:
        _images(root / "train" / c, train)
        _images(root / "test" / c, test)
    return root


ODD_MODES = ("L", "LA", "RGBA", "P", "1", "CMYK")


def _odd_tree(root: Path) -> Path:
    """Every oddity a user tree may hold: sizes, modes, a corrupt, a truncated and a text file."""
    _tree(root, ("a", "b"), train=3)
    rng = np.random.default_rng(1)
    for i, mode in enumerate(ODD_MODES):
        img = Image.fromarray(rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8)).convert(mode)
        img.save(root / "train/a" / f"mode{i}.{'jpg' if mode == 'CMYK' else 'png'}")
    grey16 = (rng.integers(0, 65536, (40, 40))).astype(np.uint16)
    Image.fromarray(grey16).save(root / "train/a/grey16.png")
    _images(root / "train/b", 1, size=(20, 500), start=10)  # tall
    _images(root / "train/b", 1, size=(300, 300), start=11)  # large
    (root / "train/b/corrupt.jpg").write_bytes(b"not a jpeg")
    png = (root / "train/b/0.png").read_bytes()
    (root / "train/b/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "train/a/notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    """The trees and checkpoints the data-dependent rows point at (placeholders in args)."""
    d = tmp_path_factory.mktemp("bad_input")
    p = {
        "good": _tree(d / "good"),
        "odd": _odd_tree(d / "odd"),
        "one_class": _tree(d / "one_class", ("a",)),
        "no_test": _tree(d / "no_test"),
        "short": _tree(d / "short", ("a", "b"), train=3),
        "test_unreadable": _tree(d / "test_unreadable", ("a", "b")),
        "nested": _tree(d / "nested", ("a", "b")),
        "split_differ": _tree(d / "split_differ", ("a", "b")),
        "no_train_images": _tree(d / "no_train_images"),
        "loop": _tree(d / "loop", ("a", "b")),
        "self_link": _tree(d / "self_link", ("a", "b")),
        "empty": d / "empty",
        "missing": d / "missing",
        "file": d / "file.txt",
        "ckpt_dir": d / "ckpt_dir",
    }
    for split in ("train", "test"):
        (p["empty"] / split).mkdir(parents=True)
    for c in ("b", "c"):
        for f in (p["no_test"] / "test" / c).iterdir():
            f.unlink()
    for f in sorted((p["short"] / "train/a").iterdir())[:2]:  # 3 files, 1 readable
        f.write_bytes(b"garbage")
    for f in (p["test_unreadable"] / "test/b").iterdir():
        f.write_bytes(b"")
    _images(p["nested"] / "train/b/2024/june", 3, start=20)
    _images(p["nested"] / "train/.thumbnails", 2)
    (p["nested"] / "train/a/.DS_Store").write_bytes(b"")
    _images(p["split_differ"] / "test/d", 2)
    for f in (p["no_train_images"] / "train/c").iterdir():
        f.unlink()
    (p["loop"] / "train/a/again").symlink_to("..", target_is_directory=True)
    (p["self_link"] / "train/b/self").symlink_to(p["self_link"] / "train/b/self")
    p["file"].write_text("plain text\n")
    p["ckpt_dir"].mkdir()
    for name, obj in {
        "ckpt_5_classes": build_model("cnn_small", 5).state_dict(),
        "ckpt_resnet20": build_model("resnet20", 10).state_dict(),
        "ckpt_list": [1, 2, 3],
        "ckpt_pickled_code": {"args": argparse.Namespace(lr=0.1)},
    }.items():
        p[name] = d / f"{name}.pt"
        torch.save(obj, p[name])
    _wrapped_checkpoints(d, p)
    p["yaml_dir"] = d / "yaml_dir"
    (p["yaml_dir"] / "experiment").mkdir(parents=True)
    (p["yaml_dir"] / "experiment/broken.yaml").write_text(
        "# @package _global_\nways: [3\nshots: 2\n"
    )
    return p


def _wrapped_checkpoints(d: Path, p: dict[str, Path]) -> None:
    """cnn_small teachers as training scripts save them: wrapped, prefixed, legacy, diverged."""
    weights = build_model("cnn_small", 10).state_dict()
    diverged = {k: v.clone() for k, v in weights.items()}
    diverged["conv1.0.weight"].view(-1)[:2] = float("nan")
    diverged["fc.weight"].view(-1)[:1] = float("inf")
    for name, obj, legacy in (
        (
            "ckpt_wrapped",
            {"model": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3},
            False,
        ),
        ("ckpt_data_parallel", {f"module.{k}": v for k, v in weights.items()}, False),
        ("ckpt_other_wrapper", {"weights": weights, "optimizer": {}}, False),
        ("ckpt_legacy", weights, True),
        ("ckpt_legacy_code", {"args": argparse.Namespace(lr=0.1)}, True),
        ("ckpt_nan", diverged, False),
    ):
        p[name] = d / f"{name}.pt"
        torch.save(obj, p[name], _use_new_zipfile_serialization=not legacy)
    p["ckpt_legacy_damaged"] = d / "ckpt_legacy_damaged.pt"
    p["ckpt_legacy_damaged"].write_bytes(p["ckpt_legacy"].read_bytes()[:200])


def _unavailable_device() -> str | None:
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    return next((k for k, ok in available.items() if not ok), None)


def _decoded(outcome: Outcome, paths: dict[str, Path]) -> torch.Tensor:
    """The odd tree's decoded training images, from the cache entry the run wrote."""
    (entry,) = (outcome.run_dir.parent / "cache" / "images").glob("*.pt")
    return torch.load(entry, weights_only=True)["train_images"]


def _check_sizes(outcome: Outcome, paths: dict[str, Path]) -> None:
    images = _decoded(outcome, paths)
    readable = 3 + len(ODD_MODES) + 1 + 3 + 2  # class a, then class b (2 unreadable left out)
    assert images.shape == (readable, 3, 32, 32) and images.dtype == torch.uint8


def _check_oversized(outcome: Outcome, paths: dict[str, Path]) -> None:
    """The 300x300 image is skipped from its header; the two unreadable files still count."""
    images = _decoded(outcome, paths)
    assert images.shape[0] == 3 + len(ODD_MODES) + 1 + 3 + 2 - 1
    assert "300x300 pixels, above data.max_pixels=50000" in outcome.err
    assert "raise data.max_pixels to use them" in outcome.err
    assert "skipped 2 unreadable image file(s)" in outcome.err


def _check_modes(outcome: Outcome, paths: dict[str, Path]) -> None:
    images = _decoded(outcome, paths)
    grey16, grey = images[3], images[4]  # class a's files sort: 0-2.png, grey16.png, mode0 (L)
    for img in (grey16, grey):
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])  # grey became RGB
    assert 60 < grey16.float().mean() < 200  # 16-bit scaled to 8 bits, not clipped to white


def _check_no_teacher_lines(outcome: Outcome, paths: dict[str, Path]) -> None:
    assert "teacher:" not in outcome.err and "training" not in outcome.err, outcome.err


def _check_short(outcome: Outcome, paths: dict[str, Path]) -> None:
    assert len(outcome.err.strip().splitlines()) <= 5, outcome.err


UNAVAILABLE = _unavailable_device()

ROWS = [
    # ---- top level ---------------------------------------------------------------------
    Row("ways", ["ways=abc"], 1, "full_key: ways"),
    Row("ways", ["ways=true"], 1, "full_key: ways"),
    Row("ways", ["ways=1"], 2, "ways=1 is invalid"),
    Row("shots", ["shots=abc"], 1, "full_key: shots"),
    Row("shots", ["shots=null"], 1, "full_key: shots"),
    Row("shots", ["shots=0"], 2, "shots=0 is invalid"),
    Row("shots", ["shots=-3"], 2, "shots=-3 is invalid"),
    Row("seed", ["seed=-1"], 2, "seed=-1 is invalid"),
    Row("seed", ["seed=99999999999999999999"], 2, "seed=99999999999999999999 is invalid"),
    Row("seed", ["seed=1.5"], 1, "full_key: seed"),
    Row("episodes", ["episodes=0"], 2, "episodes=0 is invalid"),
    Row("pool", ["pool=-1"], 2, "pool=-1 is invalid"),
    Row(
        "pool", ["pool=many"], 2, "pool='many' is invalid: it must be auto, all or an integer >= 0"
    ),
    Row("pool", ["pool=1.5"], 2, "pool=1.5 is invalid"),
    Row(
        "teacher.optimizer",
        ["teacher.optimizer=lion"],
        2,
        "teacher.optimizer='lion' is unknown; choose one of: sgd, adam, adamw.",
    ),
    Row("student.optimizer", ["student.optimizer=lion"], 2, "student.optimizer='lion' is unknown"),
    Row("cache_dir", ["cache_dir="], 2, "cache_dir is empty"),
    Row("cache_dir", ["cache_dir={file}/cache"], 2, "a part of the path is a file"),
    Row("eval_batch_size", ["eval_batch_size=0"], 2, "eval_batch_size=0"),
    Row("<unknown key>", ["foo=1"], 2, "foo=1: foo is not a kdrun config key; no key is close"),
    Row("<unknown key>", ["teacher.bogus=1"], 2, "teacher.bogus is not a kdrun config key"),
    Row("<unknown key>", ["studnet.steps=10"], 2, "did you mean student.steps=10?", console="fast"),
    Row("<unknown key>", ["studnet=cnn_small"], 2, "did you mean student=cnn_small?"),
    Row(
        "<unknown key>",
        ["data=cifar10", "data.num_classes=5"],
        2,
        "data.num_classes is a key of data=synthetic only, not of data=cifar10",
    ),
    Row(  # every job of a sweep must have the key; no job starts otherwise
        "<unknown key>",
        ["-m", "loss=dkd,kd", "loss.beta=1"],
        2,
        "loss.beta is a key of loss=dkd or loss=dist or loss=at only, not of loss=kd",
    ),
    Row("<unknown key>", ["+foo=1"], 2, "foo is not a kdrun config key", console="slow"),
    Row("<unknown key>", ["+data.augment.rotate=15"], 2, "data.augment.rotate is not a kdrun"),
    Row("experiment", ["experiment=nope"], 1, "Could not find 'experiment/nope'"),
    # ({{ }} is a literal brace: args go through str.format for the paths below)
    Row("<interpolation>", ["shots=${{nope}}"], 2, "shots cannot be resolved"),
    Row(
        "<interpolation>",
        ["cache_dir=${{oc.env:KDRUN_TEST_UNSET_VARIABLE}}"],
        2,
        "cache_dir cannot be resolved",
    ),
    # ---- teacher / student ---------------------------------------------------------------
    Row("teacher", ["teacher=nope"], 1, "Could not find 'teacher/nope'"),
    Row("student", ["student=nope"], 1, "Could not find 'student/nope'"),
    Row("teacher.arch", ["teacher.arch=nope"], 2, "teacher.arch='nope' is not a known model"),
    Row("student.arch", ["student.arch=torchvision:nope"], 2, "student.arch='torchvision:nope'"),
    Row("teacher.batch_size", ["teacher.batch_size=0"], 2, "teacher.batch_size=0 is invalid"),
    Row("student.batch_size", ["student.batch_size=-64"], 2, "student.batch_size=-64"),
    Row("student.batch_size", ["student.batch_size=6.4"], 1, "full_key: student.batch_size"),
    Row("teacher.lr", ["teacher.lr=0"], 2, "teacher.lr=0.0 is invalid"),
    Row("teacher.lr", ["teacher.lr=fast"], 1, "full_key: teacher.lr"),
    Row("student.lr", ["student.lr=inf"], 2, "student.lr=inf is invalid: it must be a finite"),
    Row("student.lr", ["student.lr=nan"], 2, "student.lr=nan is invalid"),
    Row("teacher.momentum", ["teacher.momentum=1"], 2, "teacher.momentum=1.0 is invalid"),
    Row("student.momentum", ["student.momentum=-0.5"], 2, "student.momentum=-0.5 is invalid"),
    Row("teacher.weight_decay", ["teacher.weight_decay=-1"], 2, "teacher.weight_decay=-1.0"),
    Row("student.weight_decay", ["student.weight_decay=-1e-4"], 2, "student.weight_decay=-0.0001"),
    Row("teacher.label_smoothing", ["teacher.label_smoothing=1"], 2, "label_smoothing=1.0"),
    Row("student.label_smoothing", ["student.label_smoothing=-0.1"], 2, "label_smoothing=-0.1"),
    Row("teacher.grad_clip", ["teacher.grad_clip=-1"], 2, "teacher.grad_clip=-1.0 is invalid"),
    Row("student.grad_clip", ["student.grad_clip=inf"], 2, "student.grad_clip=inf is invalid"),
    Row("teacher.epochs", ["teacher.epochs=0"], 2, "teacher.epochs=0 is invalid"),
    Row("teacher.epochs", ["teacher.epochs=1.5"], 1, "full_key: teacher.epochs"),
    Row("teacher.seed", ["teacher.seed=-7"], 2, "teacher.seed=-7 is invalid"),
    Row("teacher.tta_flip", ["teacher.tta_flip=maybe"], 1, "full_key: teacher.tta_flip"),
    Row("teacher.resume", ["teacher.resume=perhaps"], 1, "full_key: teacher.resume"),
    Row(
        "teacher.checkpoint_every",
        ["teacher.checkpoint_every=0"],
        2,
        "teacher.checkpoint_every=0 is invalid",
    ),
    Row("student.steps", ["student.steps=-1"], 2, "student.steps=-1 is invalid"),
    Row("student.epochs", ["student.epochs=0"], 2, "student.epochs=0.0 is invalid"),
    Row("student.min_steps", ["student.min_steps=0"], 2, "student.min_steps=0 is invalid"),
    Row("student.curve", ["student.curve=[0,1]"], 2, "student.curve=[0.0, 1.0] is invalid"),
    # ---- data ------------------------------------------------------------------------------
    Row("data", ["data=nope"], 1, "Could not find 'data/nope'"),
    Row("data.source", ["data.source=nope"], 2, "data.source='nope' is unknown"),
    Row("data.download", ["data.download=maybe"], 1, "full_key: data.download"),
    Row("data.image_size", ["data.image_size=4"], 2, "data.image_size=4 is invalid"),
    Row("data.image_size", ["data.image_size=100000"], 2, "data.image_size=100000 is invalid"),
    Row("data.image_size", ["data.image_size=64"], 2, "teacher.arch=cnn_small cannot take"),
    Row("data.val_per_class", ["data.val_per_class=-1"], 2, "data.val_per_class=-1 is invalid"),
    Row("student.init", ["student.init=copy"], 2, "student.init='copy' is unknown"),
    Row("export", ["export=tflite"], 1, "Could not find 'export/tflite'"),
    Row("export.name", ["export.name=tflite"], 2, "export='tflite' is unknown"),
    Row("export.opset", ["export=onnx", "export.opset=3"], 2, "export.opset=3 is invalid"),
    Row(
        "export.tolerance",
        ["export=onnx", "export.tolerance=0"],
        2,
        "export.tolerance=0.0 is invalid",
    ),
    Row(
        "export.verify_images",
        ["export=onnx", "export.verify_images=0"],
        2,
        "export.verify_images=0: it must be >= 1",
    ),
    Row(
        "data.val_per_class",
        ["experiment=smoke", "data.train_per_class=60", "data.val_per_class=20"],
        2,
        "shots=5 with pool=50 and data.val_per_class=20 is invalid: class 'circle' has only 60",
    ),
    Row("data.max_pixels", ["data.max_pixels=100"], 2, "data.max_pixels=100 is invalid"),
    Row("data.augment.crop_padding", ["data.augment.crop_padding=-1"], 2, "crop_padding=-1"),
    Row("data.augment.crop_padding", ["data.augment.crop_padding=32"], 2, "crop_padding=32"),
    Row("data.augment.flip", ["data.augment.flip=sometimes"], 1, "full_key: data.augment.flip"),
    Row("data.num_classes", ["data.num_classes=1"], 2, "data.num_classes=1 is invalid"),
    Row("data.train_per_class", ["data.train_per_class=0"], 2, "data.train_per_class=0"),
    Row("data.test_per_class", ["data.test_per_class=-5"], 2, "data.test_per_class=-5"),
    Row("data.synthetic_seed", ["data.synthetic_seed=-1"], 2, "data.synthetic_seed=-1"),
    # ---- loss: one schema and one set of range rules per method ---------------------------
    Row("loss", ["loss=nope"], 1, "Could not find 'loss/nope'"),
    Row("loss.name", ["loss.name=nope"], 2, "loss.name='nope' is unknown"),
    Row("loss.alpha", ["loss.alpha=2"], 2, "loss.alpha=2.0 is invalid for loss=kd"),
    Row("loss.alpha", ["loss.alpha=high"], 1, "full_key: loss.alpha"),
    Row("loss.alpha", ["loss=dkd", "loss.alpha=-1"], 2, "loss.alpha=-1.0 is invalid for loss=dkd"),
    Row("loss.temperature", ["loss.temperature=0"], 2, "loss.temperature=0.0 is invalid"),
    Row("loss.temperature", ["loss.temperature=inf"], 2, "loss.temperature=inf is invalid"),
    Row("loss.ce_weight", ["loss=dkd", "loss.ce_weight=-1"], 2, "loss.ce_weight=-1.0 is invalid"),
    Row("loss.beta", ["loss=dkd", "loss.beta=-1"], 2, "loss.beta=-1.0 is invalid for loss=dkd"),
    Row(
        "loss.beta",
        ["loss=kd", "loss.beta=1"],
        2,
        "loss.beta is a key of loss=dkd or loss=dist or loss=at only, not of loss=kd",
    ),
    Row("loss.gamma", ["loss=dist", "loss.gamma=-2"], 2, "loss.gamma=-2.0 is invalid"),
    Row("loss.warmup", ["loss=dkd", "loss.warmup=2"], 2, "loss.warmup=2.0 is invalid"),
    Row(
        "loss.feature_weight",
        ["loss=fitnet", "loss.feature_weight=-1"],
        2,
        "loss.feature_weight=-1.0 is invalid",
    ),
    Row("loss.p", ["loss=at", "loss.p=0"], 2, "loss.p=0.0 is invalid for loss=at"),
    Row(
        "loss.distance_weight",
        ["loss=rkd", "loss.distance_weight=-1"],
        2,
        "loss.distance_weight=-1.0",
    ),
    Row("loss.angle_weight", ["loss=rkd", "loss.angle_weight=-5"], 2, "loss.angle_weight=-5.0"),
    Row(
        "loss.student_layer",
        ["loss=fitnet", "loss.student_layer=conv9"],
        2,
        "loss.student_layer='conv9': no module named conv9",
    ),
    Row(
        "loss.student_layer",
        ["loss=fitnet", "student.arch=torchvision:resnet18"],
        2,
        "declares no 'hint' layer",
    ),
    Row("loss.teacher_layer", ["loss=rkd", "loss.teacher_layer=nope"], 2, "no module named nope"),
    Row(
        "loss.student_layers",
        ["loss=at", "loss.student_layers='conv1,nope'"],
        2,
        "no module named nope",
    ),
    Row("loss.teacher_layers", ["loss=at", "loss.teacher_layers=fc"], 2, "needs feature maps"),
    # ---- soft labels -------------------------------------------------------------------------
    Row("soft_labels.views", ["soft_labels.views=-1"], 2, "soft_labels.views=-1 is invalid"),
    Row(
        "not enough memory",
        ["soft_labels.views=200000000"],
        2,
        "soft_labels.views=200000000 needs more memory than this machine has",
        console="fast",
    ),
    Row("soft_labels.mix", ["soft_labels.mix=bogus"], 2, "soft_labels.mix='bogus' is unknown"),
    Row(
        "soft_labels.mix",
        ["soft_labels.mix=mixup", "soft_labels.views=0"],
        2,
        "needs soft_labels.views >= 1",
    ),
    Row("soft_labels.mix_alpha", ["soft_labels.mix_alpha=0"], 2, "soft_labels.mix_alpha=0.0"),
    Row(
        "soft_labels.features",
        ["soft_labels.features=disk"],
        2,
        "soft_labels.features='disk' is unknown",
    ),
    Row(
        "soft_labels.features",
        ["soft_labels.features=cache", "soft_labels.views=0"],
        2,
        "soft_labels.features=cache needs soft_labels.views >= 1",
    ),
    Row(
        "soft_labels.feature_cache_mb",
        ["soft_labels.feature_cache_mb=-1"],
        2,
        "soft_labels.feature_cache_mb=-1.0 is invalid",
    ),
    # ---- transfer: one schema and one set of range rules per source ----------------------
    Row("transfer", ["transfer=nope"], 1, "Could not find 'transfer/nope'"),
    Row("transfer.name", ["transfer.name=nope"], 2, "transfer='nope' is unknown; choose one of"),
    Row(
        "transfer.mix", ["transfer=mix", "transfer.mix=blend"], 2, "transfer.mix='blend' is unknown"
    ),
    Row(
        "transfer.mix_alpha",
        ["transfer=mix", "transfer.mix_alpha=0"],
        2,
        "transfer.mix_alpha=0.0 is invalid for transfer=mix",
    ),
    Row(
        "transfer.images",
        ["transfer=inversion", "transfer.images=0"],
        2,
        "transfer.images=0 is invalid for transfer=inversion",
    ),
    Row(
        "transfer.batch_size",
        ["transfer=inversion", "transfer.batch_size=1"],
        2,
        "transfer.batch_size=1 is invalid",
    ),
    Row(
        "transfer.steps",
        ["transfer=inversion", "transfer.steps=0"],
        2,
        "transfer.steps=0 is invalid",
    ),
    Row(
        "transfer.lr",
        ["transfer=generator", "transfer.lr=0"],
        2,
        "transfer.lr=0.0 is invalid for transfer=generator: it must be >= 1e-12",
    ),
    Row(
        "transfer.bn_weight",
        ["transfer=inversion", "transfer.bn_weight=-1"],
        2,
        "transfer.bn_weight=-1.0 is invalid",
    ),
    Row(
        "transfer.ce_weight",
        ["transfer=inversion", "transfer.ce_weight=-1"],
        2,
        "transfer.ce_weight=-1.0 is invalid",
    ),
    Row(
        "transfer.adversarial_weight",
        ["transfer=generator", "transfer.adversarial_weight=-1"],
        2,
        "transfer.adversarial_weight=-1.0 is invalid",
    ),
    Row(
        "transfer.proxy_steps",
        ["transfer=inversion", "transfer.proxy_steps=-1"],
        2,
        "transfer.proxy_steps=-1 is invalid",
    ),
    Row(
        "transfer.tv_weight",
        ["transfer=inversion", "transfer.tv_weight=-1"],
        2,
        "transfer.tv_weight=-1.0 is invalid",
    ),
    Row(
        "transfer.l2_weight",
        ["transfer=inversion", "transfer.l2_weight=-1"],
        2,
        "transfer.l2_weight=-1.0 is invalid",
    ),
    Row(
        "transfer.init",
        ["transfer=inversion", "transfer.init=zeros"],
        2,
        "transfer.init='zeros' is unknown",
    ),
    Row(
        "transfer.init_noise",
        ["transfer=inversion", "transfer.init_noise=-1"],
        2,
        "transfer.init_noise=-1.0 is invalid",
    ),
    Row(
        "transfer.jitter",
        ["transfer=inversion", "transfer.jitter=20"],
        2,
        "transfer.jitter=20 is invalid",
    ),
    Row(
        "transfer.latent",
        ["transfer=generator", "transfer.latent=0"],
        2,
        "transfer.latent=0 is invalid",
    ),
    # ---- device ----------------------------------------------------------------------------------
    Row("device", ["device=nope"], 1, "Could not find 'device/nope'"),
    Row("device.type", ["device.type=tpu"], 2, "device.type='tpu' is unknown"),
    Row("device.precision", ["device.precision=fp8"], 2, "device.precision='fp8' is unknown"),
    Row("device.channels_last", ["device.channels_last=maybe"], 2, "device.channels_last='maybe'"),
    Row("device.threads", ["device.threads=-1"], 2, "device.threads=-1 is invalid"),
    Row("device.threads", ["device.threads=two"], 1, "full_key: device.threads"),
    Row("device.compile", ["device.compile=perhaps"], 1, "full_key: device.compile"),
    Row("logger", ["logger=wandb"], 1, "Could not find 'logger/wandb'"),
    Row("logger.name", ["logger.name=wandb"], 2, "logger.name='wandb' is unknown; choose one of"),
    Row(
        "logger.log_dir",
        ["logger=mlflow", "logger.log_dir=x"],
        2,
        "logger.log_dir is a key of logger=tensorboard only, not of logger=mlflow",
    ),
    Row(
        "logger.tracking_uri",
        ["logger=tensorboard", "logger.tracking_uri=x"],
        2,
        "logger.tracking_uri is a key of logger=mlflow only, not of logger=tensorboard",
    ),
    Row(
        "logger.experiment_name",
        ["logger=tensorboard", "logger.experiment_name=x"],
        2,
        "logger.experiment_name is a key of logger=mlflow only",
    ),
    # ---- data-dependent ----------------------------------------------------------------------
    Row("ways > classes", ["ways=11"], 2, "ways=11 is invalid: the data set has 10 classes"),
    Row("ways > classes", ["data=folder", "data.root={good}", "ways=4"], 2, "has 3 classes"),
    Row("shots > images", ["shots=61", "pool=0"], 2, "shots=61 is invalid: class 'circle' has"),
    Row("shots + pool > images", ["shots=5", "pool=56"], 2, "shots=5 with pool=56 is invalid"),
    Row("data.root", ["data=folder"], 2, "data.root is not set"),
    Row("data.root", ["data=folder", "data.root={missing}"], 2, "is not a class-folder"),
    Row("data.root", ["data=folder", "data.root={file}"], 2, "is not a class-folder"),
    Row(
        "CIFAR-10 missing",
        ["data=cifar10", "data.root={missing}", "data.download=false"],
        2,
        "holds no CIFAR-10",
    ),
    Row(
        "CIFAR-10 download fails",
        ["data=cifar10", "data.root={missing}/data/cifar10"],
        2,
        "with no network, point data.root at an existing copy and set data.download=false "
        "(from the Makefile: make run DATA_ROOT=/path/to/cifar10).",
        # A proxy on a closed port: the download fails at once, with or without a network.
        env={"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"},
        check=lambda outcome, paths: _assert_absent(paths["missing"]),
    ),
    Row("tree empty", ["data=folder", "data.root={empty}"], 2, "has 0 class folder(s)"),
    Row(
        "tree one class",
        ["data=folder", "data.root={one_class}"],
        2,
        "has 1 class folder(s)",
        console="slow",
    ),
    Row("class without test images", [*TINY, "data.root={no_test}"], 2, "b, c have training"),
    Row(
        "unreadable files leave a class short",
        [*TINY, "data.root={short}"],
        2,
        "shots=2 is invalid: class 'a' has only 1 readable training images",
        after_decode=True,
    ),
    Row(
        "all test images of a class unreadable",
        [*TINY, "data.root={test_unreadable}"],
        2,
        "class(es) b have no readable test images",
        after_decode=True,
    ),
    Row(
        "classes differ between train and test",
        [*TINY, "data.root={split_differ}"],
        2,
        "they differ (only in test/: 'd')",
    ),
    Row(
        "class folder without images",
        [*TINY, "data.root={no_train_images}"],
        2,
        "class folder(s) 'c' under train/ hold no image files",
    ),
    Row("symbolic-link loop", [*TINY, "data.root={loop}"], 2, "(a symbolic-link loop)"),
    Row(
        "folder or link that cannot be read",
        [*TINY, "data.root={self_link}"],
        2,
        "self (OSError: Too many levels of symbolic links)",
    ),
    Row("images in sub-folders", [*TINY, "data.root={nested}"], 0, "using 3 image(s) from sub"),
    Row("hidden files and folders", [*TINY, "data.root={nested}"], 0, "2 hidden entr(ies)"),
    Row("pool=auto", [*TINY, "pool=auto", "data.root={good}"], 0, "pool=auto: 4 per class"),
    Row("files without an image suffix", [*TINY, "data.root={odd}"], 0, "ignoring 1 file(s)"),
    Row(
        "unreadable image files",
        [*TINY, "data.root={odd}"],
        0,
        "skipped 2 unreadable image file(s)",
    ),
    Row("other image sizes", [*TINY, "data.root={odd}"], 0, "", check=_check_sizes),
    Row(
        "image above data.max_pixels",
        [*TINY, "data.root={odd}", "data.max_pixels=50000"],
        0,
        "skipped 1 image file(s) larger than data.max_pixels under ",
        check=_check_oversized,
    ),
    Row("other image modes", [*TINY, "data.root={odd}"], 0, "", check=_check_modes),
    Row("teacher.checkpoint", ["teacher.checkpoint={missing}.pt"], 2, "cannot be read"),
    Row(
        "checkpoint not a checkpoint",
        ["teacher.checkpoint={file}"],
        2,
        "(it is not a file written by torch.save)",
    ),
    Row(
        "checkpoint not a checkpoint",
        ["teacher.checkpoint={ckpt_dir}"],
        2,
        "is a directory, not a regular file",
    ),
    Row("checkpoint not a checkpoint", ["teacher.checkpoint={ckpt_list}"], 2, "holds a list"),
    Row(
        "checkpoint with pickled code",
        ["teacher.checkpoint={ckpt_pickled_code}"],
        2,
        "was refused: unpickling it would import and call argparse.Namespace, i.e. run code",
    ),
    Row(
        "checkpoint with pickled code",
        ["teacher.checkpoint={ckpt_legacy_code}"],
        2,
        "was refused: unpickling it would import and call argparse.Namespace, i.e. run code",
    ),
    Row("checkpoint in the legacy format", ["teacher.checkpoint={ckpt_legacy}"], 0, ""),
    Row(
        "checkpoint in the legacy format",
        ["teacher.checkpoint={ckpt_legacy_damaged}"],
        2,
        "is in torch.save's legacy format (PyTorch < 1.6), which kdrun reads, but this file",
    ),
    Row(
        "checkpoint of a wrapped model",
        ["teacher.checkpoint={ckpt_wrapped}"],
        0,
        "unwrapped {'model': ...} and the 'module.' prefix (DataParallel/DDP",
    ),
    Row(
        "checkpoint of a wrapped model",
        ["teacher.checkpoint={ckpt_data_parallel}"],
        0,
        "unwrapped the 'module.' prefix (DataParallel/DDP",
    ),
    Row(
        "checkpoint of a wrapped model",
        ["teacher.checkpoint={ckpt_other_wrapper}"],
        2,
        "it is a dict of 2 entries ('weights', 'optimizer') rather than weights; kdrun looks",
    ),
    Row(
        "checkpoint with non-finite weights",
        ["teacher.checkpoint={ckpt_nan}"],
        2,
        "holds non-finite weights: 'conv1.0.weight' has 2 NaN or Inf value(s) (2 tensor(s)",
        check=_check_no_teacher_lines,
    ),
    Row(
        "checkpoint of another architecture",
        ["teacher.checkpoint={ckpt_resnet20}"],
        2,
        "saved from another architecture",
    ),
    Row(
        "checkpoint of another class count",
        ["teacher.checkpoint={ckpt_5_classes}"],
        2,
        "its head 'fc.weight' has 5 classes",
        console="fast",
    ),
    Row("sweep with a bad value", ["-m", "shots=5,0"], 2, "sweep job #1 of 2", console="fast"),
    Row(
        "KDRUN_CACHE_DIR set but empty",
        [],
        2,
        "cache_dir is empty because KDRUN_CACHE_DIR is set but empty; unset it or give a",
        env={"KDRUN_CACHE_DIR": ""},
    ),
    Row(
        "YAML syntax error in --config-dir",
        ["--config-dir={yaml_dir}"],
        1,
        "experiment/broken.yaml, line 3, column 6: not valid YAML: expected ',' or ']'",
        check=_check_short,
    ),
    Row(
        "hydra.run.dir in use",
        [],
        2,
        f"another kdrun run (pid {os.getpid()}) is using hydra.run.dir=",
        hold_run_dir=True,
    ),
    Row(
        "device not available",
        [f"device.type={UNAVAILABLE}"],
        2,
        f"device.type={UNAVAILABLE} is not available",
    ),
]


FAST_EVERY = 5  # the fast tier checks one row in five (~1 s each); the slow tier (CI) all


def _param(i: int, row: Row):
    marks = [] if i % FAST_EVERY == 0 else [pytest.mark.slow]
    if row.row == "device not available" and UNAVAILABLE is None:
        marks.append(pytest.mark.skip(reason="every device type is available here"))
    return pytest.param(row, id=f"{row.row}[{i}]", marks=marks)


def _argv(row: Row, paths: dict[str, Path], tmp_path: Path) -> list[str]:
    """Flags (`-m`) first, then a private cache (a row's own cache_dir comes later and wins),
    the base overrides and the row's, with the fixture paths filled in."""
    base = BASE
    if any(a.startswith("data=") and a != "data=synthetic" for a in row.args):
        base = [a for a in BASE if not a.startswith(SYNTHETIC_ONLY)]  # data=synthetic's own keys
    args = [a.format(**paths) for a in [*base, *row.args]]
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    cache = [] if "KDRUN_CACHE_DIR" in (row.env or {}) else [f"cache_dir={tmp_path / 'cache'}"]
    return [*flags, *cache, *rest]


_runs: dict[tuple[str, ...], Outcome] = {}  # rows with the same args share one finished run


def _outcome(row: Row, paths, tmp_path, monkeypatch) -> Outcome:
    args = tuple(_argv(row, paths, tmp_path))
    if row.rc == 0 and args in _runs:
        return _runs[args]
    for name, value in (row.env or {}).items():
        monkeypatch.setenv(name, value)
    with _held_run_dir(tmp_path / "run") if row.hold_run_dir else contextlib.nullcontext():
        outcome = run_cli(list(args), tmp_path / "run", monkeypatch)
    if row.rc == 0:
        _runs[args] = outcome
    return outcome


@contextlib.contextmanager
def _held_run_dir(run_dir: Path):
    """Hold `run_dir`'s lock as a live run does: flock on .kdrun.lock, this process's pid."""
    run_dir.mkdir(parents=True)
    with open(run_dir / ".kdrun.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


@pytest.mark.parametrize("row", [_param(i, r) for i, r in enumerate(ROWS)])
def test_bad_input_row(row: Row, paths, tmp_path, monkeypatch):
    outcome = _outcome(row, paths, tmp_path, monkeypatch)
    assert "Traceback" not in outcome.text, outcome.text[-3000:]
    assert outcome.rc == row.rc, outcome.text[-3000:]
    assert row.needle in outcome.err, outcome.err[-3000:]
    if row.check:
        row.check(outcome, paths)
    if row.rc == 0:
        assert (outcome.run_dir / "metrics.json").exists()
        return
    assert not list(tmp_path.rglob("metrics.json"))
    if not row.hold_run_dir:  # a refused start leaves no run directory behind
        assert not outcome.run_dir.exists(), sorted(outcome.run_dir.rglob("*"))
    if row.rc == 2:  # kdrun's own error: one line, after nothing but the checks
        (error,) = [line for line in outcome.err.splitlines() if "[ERROR]" in line]
        assert row.needle in error
        said = [line for line in outcome.err.splitlines() if "[ERROR]" not in line]
        started = [m for m in WORK_STARTED if any(m in line for line in said)]
        assert started == (["decoding "] if row.after_decode else []), outcome.err


def _doc_rows() -> list[str]:
    """First-column entries of every table in the two pages, backticks removed."""
    text = "\n".join(doc.read_text() for doc in DOCS)
    rows = re.findall(r"^\| `?([^|`]+?)`? \|", text, flags=re.M)
    return [r for r in rows if r not in ("key", "case")]


def test_every_doc_row_has_a_case_and_every_case_a_doc_row():
    documented, tested = _doc_rows(), {r.row for r in ROWS}
    assert len(documented) == len(set(documented)), "a row appears twice in the docs"
    assert set(documented) == tested


def test_every_config_key_has_a_doc_row():
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    def keys(tree: dict, prefix: str = "") -> list[str]:
        return [
            k
            for name, value in tree.items()
            for k in (
                keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"]
            )
        ]

    from kdrun.config import LOGGER_SCHEMAS
    from kdrun.losses import LOSSES

    options = [f"loss={m}" for m in LOSSES] + [f"logger={name}" for name in LOGGER_SCHEMAS]
    config_keys = {  # every method brings its own loss.* keys, every tracker its logger.* keys
        key
        for option in options
        for key in keys(OmegaConf.to_container(compose_config([option]), resolve=False))
    }
    missing = sorted(config_keys - set(_doc_rows()))
    assert not missing, f"undocumented config keys: {missing}"


def _console_param(i: int, row: Row):
    marks = [pytest.mark.slow] if row.console == "slow" else []
    return pytest.param(row, id=f"{row.row}[{i}]", marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("row", [_console_param(i, r) for i, r in enumerate(ROWS) if r.console])
def test_console_script_agrees(row: Row, paths, tmp_path):
    """The in-process runs above stand for the console script. test_cli.py already runs a Hydra
    type error, an unknown key, an unknown option, a range and a data error as processes; these
    add a checkpoint and a sweep (fast tier), a '+key' and a folder tree (slow tier)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [KDRUN, *_argv(row, paths, tmp_path), f"hydra.run.dir={run_dir}"]
        + [f"hydra.sweep.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
    )
    assert proc.returncode == row.rc
    assert row.needle in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("metrics.json"))
