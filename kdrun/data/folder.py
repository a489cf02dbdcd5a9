"""Class-folder image trees, `root/{train,test}/<class>/...`, decoded once into uint8 tensors.

Which files are used is decided by kdrun/data/folder_scan.py. Decoding tens of thousands of
files costs seconds, so the decoded tensors are stored in the artifact cache under a fingerprint
of the tree (paths, sizes, mtimes) and reloaded on later runs.
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

from kdrun.config import DataConf
from kdrun.data.folder_scan import TreeScan, fs_error, scan_tree
from kdrun.data.registry import ImageDataset, ImageSplit, SourceInfo, register_source
from kdrun.errors import ConfigError
from kdrun.runtime.progress import Meter, progress
from kdrun.store.cache import ArtifactCache, digest

log = logging.getLogger(__name__)
DEFAULT_MAX_PIXELS = DataConf.max_pixels
OVERSIZED = "data.max_pixels"  # in the reason of every file skipped for its size


def resolve_root(root: str | None, key: str = "data.root") -> Path:
    """Resolve a configured path against the launch directory, as users expect."""
    from hydra.utils import to_absolute_path

    if not root:
        raise ConfigError(f"{key} is not set: point it at a directory holding train/ and test/.")
    return Path(to_absolute_path(str(root)))


def _log_left_out(root: Path, scan: TreeScan) -> None:
    """One line for what the listing skipped, one for nested images: a user who expects
    every file to be used learns which were not, and why."""
    parts = []
    if scan.ignored:
        parts.append(
            f"{len(scan.ignored)} file(s) without an image suffix or not a regular file "
            f"(e.g. {scan.ignored[0]})"
        )
    if scan.hidden:
        parts.append(
            f"{len(scan.hidden)} hidden entr(ies), names starting with '.' (e.g. {scan.hidden[0]})"
        )
    if parts:
        log.info("%s: ignoring %s", root, " and ".join(parts))
    if scan.nested:
        log.info(
            "%s: using %d image(s) from sub-folders of class folders, labelled with their class "
            "folder (e.g. %s)",
            root,
            len(scan.nested),
            scan.nested[0],
        )


def describe_tree(root: Path) -> SourceInfo:
    scan = scan_tree(root)
    _log_left_out(root, scan)
    train, test = scan.files["train"], scan.files["test"]
    return SourceInfo(
        classes=list(train),
        train_counts=[len(f) for f in train.values()],
        test_counts=[len(test[c]) for c in train],
    )


def _fingerprint(root: Path, tree: dict[str, dict[str, list[Path]]]) -> list[tuple]:
    """Relative path, size and mtime of every image used, nested ones included: adding, moving
    or editing any of them decodes the tree again."""
    rows = []
    prefix = len(str(root)) + 1
    for classes in tree.values():
        for files in classes.values():
            for p in files:
                try:
                    st = os.stat(p)
                except OSError as exc:
                    raise fs_error(root, p, exc) from None
                rows.append((str(p)[prefix:], st.st_size, st.st_mtime_ns))
    return rows


def pixel_cap(cfg: DictConfig) -> int:
    """data.max_pixels; a data config made without the key (older records) has the default."""
    return int(cfg.get("max_pixels", DEFAULT_MAX_PIXELS))


def _decode(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | str:
    """The image as (size, size, 3) uint8 RGB, or why it cannot be read. Any mode (grey, RGBA,
    palette, CMYK, 16-bit grey) is converted to RGB (alpha dropped), any size resized to a
    square (aspect ratio not kept). An image above `max_pixels` is refused from its header,
    before its pixels are decoded."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                return f"{width}x{height} pixels, above {OVERSIZED}={max_pixels}"
            if img.mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits, not clip at 255
                img = Image.fromarray((np.asarray(img, dtype=np.uint32) // 257).astype(np.uint8))
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # PIL's plugins raise many types for corrupt files
        return f"{type(exc).__name__}: {str(exc).strip()[:120]}"


def decode_split(
    classes: dict[str, list[Path]],
    size: int,
    meter: Meter | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[ImageSplit, list[tuple[str, str]]]:
    """Decode every file of a split in parallel; unreadable files are left out and returned
    as (path, reason). `meter` counts the files as they are decoded."""
    paths = [p for files in classes.values() for p in files]
    labels = torch.tensor(
        [i for i, files in enumerate(classes.values()) for _ in files], dtype=torch.int64
    )
    # Filled in place, channels first: a list of arrays, a stack and a permuted copy would
    # each hold the whole split again (about 150 MB apiece for CIFAR-10's training split).
    images = np.empty((len(paths), 3, size, size), np.uint8)
    keep = np.zeros(len(paths), bool)
    skipped: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = pool.map(lambda p: _decode(p, size, max_pixels), paths, chunksize=256)
        for i, array in enumerate(decoded):
            if isinstance(array, str):
                skipped.append((str(paths[i]), array))
            else:
                images[i] = array.transpose(2, 0, 1)
                keep[i] = True
            if meter is not None:
                meter.advance()
    if skipped:  # the only copy: dropping the files that could not be read
        images, labels = images[keep], labels[torch.from_numpy(keep)]
    return ImageSplit(images=torch.from_numpy(images), labels=labels), skipped


def _tree_key(root: Path, scan: TreeScan, image_size: int, source: str, max_pixels: int) -> str:
    """The cap joins the key only when it is not the default, so the sets decoded before the
    cap existed (none of whose images reached it in practice) keep their identity and the
    teachers and soft labels cached on them."""
    cap = {} if max_pixels == DEFAULT_MAX_PIXELS else {"max_pixels": max_pixels}
    return digest(
        {"source": source, "files": _fingerprint(root, scan.files), "size": image_size, "v": 2}
        | cap
    )


def tree_identity(
    root: Path, image_size: int, source: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> str:
    """The decoded set's identity (its cache key) from a listing and stats, decoding nothing:
    what a finished run's record must match to be reused."""
    return _tree_key(root, scan_tree(root), image_size, source, max_pixels)


def _warn_skipped(root: Path, entry: dict) -> None:
    """One warning for the files too large to decode (naming the key that allows them), one
    for the unreadable ones; logged on every run, not only the decoding one."""
    for kind, what, hint in (
        ("oversized", "image file(s) larger than data.max_pixels", "; raise data.max_pixels"),
        ("skipped", "unreadable image file(s)", ""),
    ):
        counts = entry.get(kind)
        if not counts or not sum(counts):
            continue
        path, reason = entry[f"{kind}_example"]
        log.warning(
            "skipped %d %s under %s (%d train, %d test), e.g. %s (%s)%s",
            sum(counts),
            what,
            root,
            *counts,
            path,
            reason,
            hint + " to use them" if hint else "",
        )


def load_tree(
    root: Path,
    image_size: int,
    cache: ArtifactCache,
    source: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    scan = scan_tree(root)
    tree = scan.files
    key = _tree_key(root, scan, image_size, source, max_pixels)

    def decode() -> dict:
        files = sum(len(f) for split in tree.values() for f in split.values())
        log.info("decoding %s: %d images (first use; the decoded tensors are cached)", root, files)
        with progress("decoding", files, "image") as meter:
            train, skip_train = decode_split(tree["train"], image_size, meter, max_pixels)
            test, skip_test = decode_split(tree["test"], image_size, meter, max_pixels)
        big_train = [s for s in skip_train if OVERSIZED in s[1]]
        big_test = [s for s in skip_test if OVERSIZED in s[1]]
        skip_train = [s for s in skip_train if OVERSIZED not in s[1]]
        skip_test = [s for s in skip_test if OVERSIZED not in s[1]]
        return {
            "train_images": train.images,
            "train_labels": train.labels,
            "test_images": test.images,
            "test_labels": test.labels,
            "classes": list(tree["train"]),
            "skipped": [len(skip_train), len(skip_test)],
            "skipped_example": list((skip_train + skip_test)[0]) if skip_train or skip_test else [],
            "oversized": [len(big_train), len(big_test)],
            "oversized_example": list((big_train + big_test)[0]) if big_train or big_test else [],
        }

    entry, _ = cache.get_or_build("images", key, decode)
    _warn_skipped(root, entry)
    left_out = sum(entry["skipped"]) + sum(entry.get("oversized", [0, 0]))
    return ImageDataset(
        train=ImageSplit(entry["train_images"], entry["train_labels"]),
        test=ImageSplit(entry["test_images"], entry["test_labels"]),
        classes=list(entry["classes"]),
        identity=key,
        files_ignored=len(scan.ignored),
        files_hidden=len(scan.hidden),
        files_unreadable=left_out,  # unreadable or above data.max_pixels
        images_nested=len(scan.nested),
    )


@register_source("folder")
class FolderSource:
    """Any user image set laid out as class folders, resized to `data.image_size`."""

    def describe(self, cfg: DictConfig) -> SourceInfo:
        return describe_tree(resolve_root(cfg.root))

    def identity(self, cfg: DictConfig) -> str:
        return tree_identity(
            resolve_root(cfg.root),
            cfg.image_size,
            "folder",
            pixel_cap(cfg),
        )

    def load(self, cfg: DictConfig, cache: ArtifactCache) -> ImageDataset:
        return load_tree(
            resolve_root(cfg.root),
            cfg.image_size,
            cache,
            "folder",
            pixel_cap(cfg),
        )
