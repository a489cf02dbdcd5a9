"""Class-folder image trees, `root/{train,test}/<class>/*`, decoded once into uint8 tensors.

Decoding tens of thousands of files costs seconds, so the decoded tensors are stored in the
artifact cache under a fingerprint of the tree (paths, sizes, mtimes) and reloaded on later runs.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from kdrun.cache import ArtifactCache, digest
from kdrun.config import ConfigError
from kdrun.data.registry import ImageDataset, ImageSplit, SourceInfo, register_source

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
SPLITS = ("train", "test")


def resolve_root(root: str | None, key: str = "data.root") -> Path:
    """Resolve a configured path against the launch directory, as users expect."""
    from hydra.utils import to_absolute_path

    if not root:
        raise ConfigError(f"{key} is not set: point it at a directory holding train/ and test/.")
    return Path(to_absolute_path(str(root)))


def is_tree(root: Path) -> bool:
    return all((root / split).is_dir() for split in SPLITS)


def _class_files(split_dir: Path, ignored: list[str]) -> dict[str, list[Path]]:
    """os.scandir reads file types from the directory itself: no stat call per image. Files
    without an image suffix go to `ignored`."""
    files = {}
    with os.scandir(split_dir) as entries:
        class_dirs = sorted(e.name for e in entries if e.is_dir())
    for name in class_dirs:
        images = []
        with os.scandir(split_dir / name) as entries:
            for e in entries:
                if not e.is_file():
                    continue
                suffix = os.path.splitext(e.name)[1].lower()
                (images if suffix in IMAGE_SUFFIXES else ignored).append(e.path)
        files[name] = [Path(p) for p in sorted(images)]
    return files


def scan_tree(root: Path, ignored: list[str] | None = None) -> dict[str, dict[str, list[Path]]]:
    """Per split, the image files of each class; checks the tree is usable."""
    if not is_tree(root):
        raise ConfigError(
            f"data.root={root} is not a class-folder tree: expected {root}/train/<class>/ and "
            f"{root}/test/<class>/ directories of images."
        )
    ignored = [] if ignored is None else ignored
    tree = {split: _class_files(root / split, ignored) for split in SPLITS}
    classes = [c for c, files in tree["train"].items() if files]
    if len(classes) < 2:
        raise ConfigError(
            f"data.root={root} has {len(classes)} class folder(s) with images under train/; "
            "a classification task needs at least 2."
        )
    missing = [c for c in classes if not tree["test"].get(c)]
    if missing:
        raise ConfigError(
            f"data.root={root}: class(es) {', '.join(missing)} have training images but none "
            "under test/; every class needs test images for evaluation."
        )
    return {split: {c: tree[split][c] for c in classes} for split in SPLITS}


def describe_tree(root: Path) -> SourceInfo:
    ignored: list[str] = []
    tree = scan_tree(root, ignored)
    if ignored:
        log.info(
            "%s: ignoring %d file(s) without an image suffix, e.g. %s",
            root,
            len(ignored),
            ignored[0],
        )
    return SourceInfo(
        classes=list(tree["train"]), train_counts=[len(f) for f in tree["train"].values()]
    )


def _fingerprint(root: Path, tree: dict[str, dict[str, list[Path]]]) -> list[tuple]:
    rows = []
    prefix = len(str(root)) + 1
    for classes in tree.values():
        for files in classes.values():
            for p in files:
                st = os.stat(p)
                rows.append((str(p)[prefix:], st.st_size, st.st_mtime_ns))
    return rows


def _decode(path: Path, size: int) -> np.ndarray | str:
    """The image as (size, size, 3) uint8 RGB, or why it cannot be read. Any mode (grey, RGBA,
    palette, CMYK, 16-bit grey) is converted to RGB (alpha dropped), any size resized to a
    square (aspect ratio not kept)."""
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits, not clip at 255
                img = Image.fromarray((np.asarray(img, dtype=np.uint32) // 257).astype(np.uint8))
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # PIL's plugins raise many types for corrupt files
        return f"{type(exc).__name__}: {str(exc).strip()[:120]}"


def decode_split(
    classes: dict[str, list[Path]], size: int
) -> tuple[ImageSplit, list[tuple[str, str]]]:
    """Decode every file of a split in parallel; unreadable files are left out and returned
    as (path, reason)."""
    paths = [p for files in classes.values() for p in files]
    labels = [i for i, files in enumerate(classes.values()) for _ in files]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(pool.map(lambda p: _decode(p, size), paths, chunksize=256))
    keep = [i for i, a in enumerate(arrays) if not isinstance(a, str)]
    skipped = [(str(paths[i]), a) for i, a in enumerate(arrays) if isinstance(a, str)]
    images = np.stack([arrays[i] for i in keep]) if keep else np.zeros((0, size, size, 3), "uint8")
    split = ImageSplit(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64),
    )
    return split, skipped


def load_tree(root: Path, image_size: int, cache: ArtifactCache, source: str) -> ImageDataset:
    tree = scan_tree(root)
    key = digest({"source": source, "files": _fingerprint(root, tree), "size": image_size, "v": 2})

    def decode() -> dict:
        log.info("decoding %s (first use; the decoded tensors are cached)", root)
        train, skip_train = decode_split(tree["train"], image_size)
        test, skip_test = decode_split(tree["test"], image_size)
        return {
            "train_images": train.images,
            "train_labels": train.labels,
            "test_images": test.images,
            "test_labels": test.labels,
            "classes": list(tree["train"]),
            "skipped": [len(skip_train), len(skip_test)],
            "skipped_example": list((skip_train + skip_test)[0]) if skip_train or skip_test else [],
        }

    entry, _ = cache.get_or_build("images", key, decode)
    n_train, n_test = entry["skipped"]
    if n_train or n_test:  # logged on every run, not only the decoding one
        path, reason = entry["skipped_example"]
        log.warning(
            "skipped %d unreadable image file(s) under %s (%d train, %d test), e.g. %s (%s)",
            n_train + n_test,
            root,
            n_train,
            n_test,
            path,
            reason,
        )
    return ImageDataset(
        train=ImageSplit(entry["train_images"], entry["train_labels"]),
        test=ImageSplit(entry["test_images"], entry["test_labels"]),
        classes=list(entry["classes"]),
        identity=key,
    )


@register_source("folder")
class FolderSource:
    """Any user image set laid out as class folders, resized to `data.image_size`."""

    def describe(self, cfg: DictConfig) -> SourceInfo:
        return describe_tree(resolve_root(cfg.root))

    def load(self, cfg: DictConfig, cache: ArtifactCache) -> ImageDataset:
        return load_tree(resolve_root(cfg.root), cfg.image_size, cache, "folder")
