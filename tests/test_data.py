"""Data sources: class-folder trees, torchvision's CIFAR-10 files, the decoded-tensor cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from kdrun.data import get_source
from kdrun.data.cifar10 import BATCHES_DIR, CLASSES
from kdrun.errors import ConfigError
from kdrun.store.cache import ArtifactCache


def make_tree(root: Path, classes=("cats", "dogs", "owls"), per_class=4, test_per_class=2) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)  # not 32x32 on purpose
                Image.fromarray(arr).save(d / f"{i}.png")
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(root / "train/cats/gray.png")
    (root / "train/dogs/broken.jpg").write_bytes(b"not a jpeg")
    (root / "train/dogs/notes.txt").write_text("ignored: not an image suffix")
    return root


def folder_cfg(root, **kw):
    return OmegaConf.create({"source": "folder", "root": str(root), "image_size": 32, **kw})


def test_folder_tree_decodes_resizes_and_skips_unreadable(tmp_path):
    root = make_tree(tmp_path / "tree")
    src = get_source("folder")
    info = src.describe(folder_cfg(root))
    assert info.classes == ["cats", "dogs", "owls"] and info.train_counts == [5, 5, 4]
    ds = src.load(folder_cfg(root), ArtifactCache(tmp_path / "cache"))
    assert ds.train.images.shape == (13, 3, 32, 32)  # 14 files, the broken one skipped
    assert ds.train.images.dtype == torch.uint8
    assert ds.train.labels.tolist() == [0] * 5 + [1] * 4 + [2] * 4
    assert ds.test.images.shape == (6, 3, 32, 32)


def test_decoded_tensors_are_cached_and_invalidated_by_changes(tmp_path):
    root = make_tree(tmp_path / "tree")
    cache = ArtifactCache(tmp_path / "cache")
    first = get_source("folder").load(folder_cfg(root), cache)
    assert cache.events["images"] == {"hit": 0, "miss": 1}
    second = get_source("folder").load(folder_cfg(root), cache)
    assert cache.events["images"]["hit"] == 1 and second.identity == first.identity
    assert torch.equal(first.train.images, second.train.images)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train/owls/new.png")
    third = get_source("folder").load(folder_cfg(root), cache)
    assert cache.events["images"]["miss"] == 2 and len(third.train.labels) == 14


@pytest.mark.parametrize(
    "build,needle",
    [
        (lambda r: r.mkdir(), "not a class-folder tree"),
        (lambda r: ((r / "train/only").mkdir(parents=True), (r / "test").mkdir()), "at least 2"),
    ],
)
def test_unusable_trees_are_refused(tmp_path, build, needle):
    root = tmp_path / "bad"
    build(root)
    with pytest.raises(ConfigError, match=needle):
        get_source("folder").describe(folder_cfg(root))


def _fake_cifar_batches(root: Path, n_train=20, n_test=10) -> None:
    d = root / BATCHES_DIR
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name, n):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": [i % 10 for i in range(n)]}, f)

    for i in range(1, 6):
        dump(f"data_batch_{i}", n_train // 5)
    dump("test_batch", n_test)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)


def _offline_integrity(monkeypatch):
    """The fake batches have other checksums than the real ones: check existence only."""
    from torchvision.datasets import CIFAR10, cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).exists())
    monkeypatch.setattr(
        CIFAR10, "_check_integrity", lambda self: (Path(self.root) / BATCHES_DIR).exists()
    )


def test_cifar10_reads_torchvision_files(tmp_path, monkeypatch):
    _offline_integrity(monkeypatch)
    _fake_cifar_batches(tmp_path)
    cfg = OmegaConf.create(
        {"source": "cifar10", "root": str(tmp_path), "download": False, "image_size": 32}
    )
    ds = get_source("cifar10").load(cfg, ArtifactCache(tmp_path / "cache"))
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (10, 3, 32, 32)
    assert ds.classes == CLASSES and ds.train.labels[:3].tolist() == [0, 1, 2]


def test_cifar10_download_path_is_used_when_allowed(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    calls = []

    def fake_download(self):  # stands in for the network fetch and extraction
        calls.append(self.root)
        if not (Path(self.root) / BATCHES_DIR).exists():
            _fake_cifar_batches(Path(self.root))

    _offline_integrity(monkeypatch)
    monkeypatch.setattr(CIFAR10, "download", fake_download)
    cfg = OmegaConf.create(
        {"source": "cifar10", "root": str(tmp_path / "dl"), "download": True, "image_size": 32}
    )
    assert get_source("cifar10").describe(cfg).train_counts == [5000] * 10
    ds = get_source("cifar10").load(cfg, ArtifactCache(tmp_path / "cache"))
    assert calls and len(ds.train.labels) == 20


def test_cifar10_reads_a_class_folder_copy(tmp_path):
    root = make_tree(tmp_path / "tree")
    cfg = OmegaConf.create(
        {"source": "cifar10", "root": str(root), "download": False, "image_size": 32}
    )
    ds = get_source("cifar10").load(cfg, ArtifactCache(tmp_path / "cache"))
    assert ds.classes == ["cats", "dogs", "owls"]


def test_synthetic_source_is_deterministic():
    cfg = OmegaConf.create(
        {
            "source": "synthetic",
            "num_classes": 4,
            "train_per_class": 5,
            "test_per_class": 3,
            "image_size": 32,
            "synthetic_seed": 1,
        }
    )
    a = get_source("synthetic").load(cfg, None)
    b = get_source("synthetic").load(cfg, None)
    assert torch.equal(a.train.images, b.train.images) and a.identity == b.identity
    assert a.train.images.shape == (20, 3, 32, 32) and a.test.images.shape == (12, 3, 32, 32)


def test_a_tampered_cifar10_batches_folder_names_the_file_that_failed(tmp_path):
    """issue 22, class 7: not 'use download=True' when download is already false."""
    from omegaconf import OmegaConf

    from kdrun.data import get_source
    from kdrun.errors import ConfigError
    from kdrun.store.cache import ArtifactCache

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"tampered")
    cfg = OmegaConf.create(
        {"source": "cifar10", "root": str(tmp_path), "download": False, "image_size": 32}
    )
    with pytest.raises(ConfigError) as info:
        get_source("cifar10").load(cfg, ArtifactCache(tmp_path / "cache"))
    message = str(info.value)
    assert f"{folder / 'data_batch_1'} does not match CIFAR-10's published MD5" in message
    assert "download=True" not in message
