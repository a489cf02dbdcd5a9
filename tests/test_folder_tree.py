"""Class-folder trees: every file is either used or counted, and every listing error is one
clear paragraph; `pool=auto` fits the pool to a small tree."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from kdrun.data import get_source
from kdrun.data.fewshot import resolve_pool
from kdrun.errors import ConfigError
from kdrun.pipeline import run
from kdrun.preflight import preflight
from kdrun.store.cache import ArtifactCache
from tests.conftest import SMOKE_FAST


def _pngs(d: Path, n: int, start: int = 0, size: int = 16) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def _tree(root: Path, classes=("cats", "dogs"), train=3, test=2) -> Path:
    for c in classes:
        _pngs(root / "train" / c, train)
        _pngs(root / "test" / c, test)
    return root


def _cfg(root: Path):
    return OmegaConf.create({"source": "folder", "root": str(root), "image_size": 16})


def _describe(root: Path):
    return get_source("folder").describe(_cfg(root))


def _load(root: Path, cache: Path):
    return get_source("folder").load(_cfg(root), ArtifactCache(cache))


def _one_paragraph(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_nested_images_are_used_counted_and_fingerprinted(tmp_path, caplog):
    root = _tree(tmp_path / "t")
    _pngs(root / "train/cats/2024/summer", 2, start=10)  # two levels down
    _pngs(root / "train/cats/2023", 1, start=20)
    caplog.set_level(logging.INFO)
    info = _describe(root)
    assert info.classes == ["cats", "dogs"] and info.train_counts == [6, 3]
    assert "using 3 image(s) from sub-folders" in caplog.text
    ds = _load(root, tmp_path / "cache")
    assert ds.images_nested == 3
    assert ds.train.labels.tolist() == [0] * 6 + [1] * 3  # nested images keep their class
    _pngs(root / "train/cats/2024/summer", 1, start=30)  # a new nested file: decoded again
    again = _load(root, tmp_path / "cache")
    assert again.identity != ds.identity and len(again.train.labels) == 10


def test_a_class_with_only_nested_images_is_kept(tmp_path):
    root = _tree(tmp_path / "t", classes=("cats",))
    _pngs(root / "train/dogs/album1", 2)
    _pngs(root / "train/dogs/album2", 2, start=5)
    _pngs(root / "test/dogs/x", 2)
    info = _describe(root)
    assert info.classes == ["cats", "dogs"] and info.train_counts == [3, 4]


def test_hidden_entries_are_ignored_and_counted_at_every_level(tmp_path, caplog):
    root = _tree(tmp_path / "t")
    _pngs(root / "train/.thumbnails", 3)  # a hidden folder is not a class; counts once
    _pngs(root / "test/.thumbnails", 3)
    (root / "train/cats/.DS_Store").write_bytes(b"\0\0")
    _pngs(root / "train/dogs/sub/.cache", 2)  # a hidden folder deeper down
    (root / "train/dogs/sub/.hidden.png").write_bytes(b"AppleDouble")
    (root / "train/dogs/notes.txt").write_text("no image suffix")
    caplog.set_level(logging.INFO)
    info = _describe(root)
    assert info.classes == ["cats", "dogs"] and info.train_counts == [3, 3]
    ignoring = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignoring) == 1  # one line for everything left out
    assert "1 file(s) without an image suffix" in ignoring[0]
    assert "5 hidden entr(ies)" in ignoring[0]
    ds = _load(root, tmp_path / "cache")
    assert (ds.files_hidden, ds.files_ignored, ds.files_unreadable) == (5, 1, 0)


@pytest.mark.parametrize(
    "extra,needle",
    [
        ("test/owls", "only in test/: 'owls'"),
        ("train/owls", "only in train/: 'owls'"),
    ],
)
def test_classes_must_match_between_splits(tmp_path, extra, needle):
    root = _tree(tmp_path / "t")
    _pngs(root / extra, 2)
    with pytest.raises(ConfigError) as exc:
        _describe(root)
    assert needle in _one_paragraph(exc)


def test_a_train_class_folder_without_images_is_refused_not_dropped(tmp_path):
    root = _tree(tmp_path / "t", classes=("cats", "dogs", "owls"))
    for f in (root / "train/owls").iterdir():
        f.unlink()
    (root / "train/owls/readme.txt").write_text("todo")
    with pytest.raises(ConfigError, match="'owls' under train/ hold no image files"):
        _describe(root)


def test_a_symlink_loop_is_one_paragraph_naming_the_link(tmp_path):
    root = _tree(tmp_path / "t")
    link = root / "train/cats/again"
    link.symlink_to("..", target_is_directory=True)  # train/cats/again -> train/
    with pytest.raises(ConfigError) as exc:
        _describe(root)
    text = _one_paragraph(exc)
    assert str(link) in text and "symbolic-link loop" in text


def test_a_link_to_itself_is_one_paragraph_naming_it(tmp_path):
    root = _tree(tmp_path / "t")
    link = root / "train/dogs/self"
    link.symlink_to(link)  # the OS refuses it: ELOOP
    with pytest.raises(ConfigError) as exc:
        _describe(root)
    text = _one_paragraph(exc)
    assert f"cannot read {link}" in text


def test_a_second_link_to_a_folder_is_refused(tmp_path):
    root = _tree(tmp_path / "t")
    (root / "train/cats/more").symlink_to(root / "train/dogs", target_is_directory=True)
    with pytest.raises(ConfigError, match="already read through another path"):
        _describe(root)


def _deny(monkeypatch, denied: Path) -> None:
    real = os.scandir

    def scandir(path="."):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("where", ["test/dogs", "train/cats/sub"])
def test_an_unreadable_folder_is_one_paragraph_naming_it(tmp_path, monkeypatch, where):
    root = _tree(tmp_path / "t")
    (root / "train/cats/sub").mkdir()
    _deny(monkeypatch, root / where)
    with pytest.raises(ConfigError) as exc:
        _describe(root)
    text = _one_paragraph(exc)
    assert f"cannot read {root / where} (PermissionError" in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_an_unreadable_folder_for_real(tmp_path):
    root = _tree(tmp_path / "t")
    (root / "train/cats").chmod(0)
    try:
        with pytest.raises(ConfigError, match="cannot read .*train/cats \\(PermissionError"):
            _describe(root)
    finally:
        (root / "train/cats").chmod(0o755)


def test_an_unreadable_folder_through_the_cli_exits_2_without_traceback(tmp_path, monkeypatch):
    from tests.test_bad_input import run_cli

    root = _tree(tmp_path / "t")
    _deny(monkeypatch, root / "train/dogs")
    args = ["data=folder", f"data.root={root}", "ways=2", f"cache_dir={tmp_path / 'cache'}"]
    outcome = run_cli(args, tmp_path / "run", monkeypatch)
    assert outcome.rc == 2 and "Traceback" not in outcome.text
    (error,) = [line for line in outcome.err.splitlines() if "[ERROR]" in line]
    assert f"cannot read {root / 'train/dogs'}" in error


SMALL = [
    "data=folder",
    "ways=2",
    "teacher=cnn_small",
    "teacher.epochs=1",
    "student.steps=20",
    "device=cpu",
    "soft_labels.views=0",  # not what is tested here: only saves time
]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """The first set a user tries: 2 classes, 120 training images each (one class 121)."""
    root = tmp_path_factory.mktemp("small")
    _pngs(root / "train/cats", 120)
    _pngs(root / "train/dogs", 121, start=200)
    _pngs(root / "test/cats", 10, start=400)
    _pngs(root / "test/dogs", 10, start=500)
    return root


def test_default_pool_fits_a_small_folder_and_is_recorded(
    small_tree, compose_cfg, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    cfg = compose_cfg(*SMALL, f"data.root={small_tree}")
    assert cfg.pool == "auto"
    metrics = run(cfg, tmp_path / "run")
    assert metrics["setting"]["pool"] == 115 and metrics["setting"]["pool_requested"] == "auto"
    assert metrics["episodes"][0]["pool_size"] == 2 * 115
    on_disk = json.loads((tmp_path / "run/metrics.json").read_text())
    assert on_disk["setting"]["pool"] == 115
    assert "pool=auto: 115 per class (class 'cats' has 120 readable training images)" in caplog.text


def test_an_explicit_pool_that_does_not_fit_still_fails(small_tree, compose_cfg):
    with pytest.raises(ConfigError, match=r"shots=5 with pool=500 is invalid: class 'cats'"):
        preflight(compose_cfg(*SMALL, f"data.root={small_tree}", "pool=500"))


@pytest.mark.parametrize("value", ["many", "1.5", "true", "null"])
def test_pool_must_be_auto_or_a_non_negative_integer(compose_cfg, value):
    with pytest.raises(ConfigError, match="it must be auto, all or an integer >= 0"):
        preflight(compose_cfg(*SMOKE_FAST, f"pool={value}"))


def test_pool_all_takes_everything_the_smallest_class_has_left(small_tree, compose_cfg, caplog):
    """Past the auto cap: the whole remaining training split (cats: 120 images - 5 shots)."""
    caplog.set_level(logging.INFO)
    cfg = compose_cfg(*SMALL, f"data.root={small_tree}", "pool=all")
    info = preflight(cfg).info
    fewest = min(info.train_counts)
    assert resolve_pool(cfg, info.classes, info.train_counts, announce=True) == fewest - 5
    assert f"pool=all: {fewest - 5} per class (class 'cats' has {fewest}" in caplog.text


@pytest.mark.slow
def test_auto_pool_reuses_the_soft_labels_of_the_same_explicit_pool(compose_cfg, tmp_path):
    """The cache keys see the resolved integer: pool=auto that resolves to P hits pool=P's
    entries (smoke data: 60 per class, 5 shots -> 55; CIFAR-10: 500, as the old default)."""
    explicit = run(compose_cfg(*SMOKE_FAST, "pool=55", "shots=5"), tmp_path / "a")
    auto = run(compose_cfg(*SMOKE_FAST, "pool=auto", "shots=5"), tmp_path / "b")
    assert explicit["setting"]["pool"] == auto["setting"]["pool"] == 55
    assert not explicit["episodes"][0]["soft_labels"]["hit"]
    assert auto["episodes"][0]["soft_labels"]["hit"]
