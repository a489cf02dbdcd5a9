"""Listing a class-folder tree, `root/{train,test}/<class>/...`: which files are images of which
class, and what is left out and why, so that every file is either used or counted.

Rules: a class is a non-hidden folder directly under train/ (or test/); its images are every
file with an image suffix anywhere below it (sub-folders included, each folder read once even
when links reach it twice). Names starting with '.' (files or folders, at any level) are hidden
and skipped. Both splits must hold the same class folders. Any error of the file system while
listing (no permission, a link loop, a broken path) is a ConfigError naming the path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kdrun.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
SPLITS = ("train", "test")


@dataclass
class TreeScan:
    """Per split, the image paths of each class (sorted), and the paths left out or nested."""

    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # no image suffix, or not a regular file
    hidden: list[str] = field(default_factory=list)  # '.'-names; a hidden folder counts once
    nested: list[str] = field(default_factory=list)  # used images below a class's top folder


def is_tree(root: Path) -> bool:
    return all((root / split).is_dir() for split in SPLITS)


def fs_error(root: Path, path: str | Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ConfigError(
        f"data.root={root}: cannot read {path} ({type(exc).__name__}: {reason}). Every folder "
        "and link under train/ and test/ must be readable and lead somewhere: fix its "
        "permissions or the link, or move it out of data.root."
    )


def _entries(path: Path, root: Path) -> list[os.DirEntry]:
    """A folder's entries by name (a stable order for the fingerprint and the labels)."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise fs_error(root, path, exc) from None


def _kind(entry: os.DirEntry, root: Path) -> str:
    """'dir', 'file' or 'other' (a broken link, a socket...), following links."""
    try:
        if entry.is_dir():
            return "dir"
        return "file" if entry.is_file() else "other"
    except OSError as exc:  # e.g. ELOOP: a link to itself
        raise fs_error(root, entry.path, exc) from None


def _class_images(class_dir: Path, root: Path, seen: set[str], scan: TreeScan) -> list[Path]:
    """Every image below `class_dir`, depth first; `seen` holds the real paths of the folders
    this split has already read, so a link back up (a loop) or a second link is caught."""
    images: list[str] = []
    above = tuple(str(p) for p in Path(os.path.realpath(class_dir)).parents)
    stack: list[tuple[Path, tuple[str, ...]]] = [(class_dir, above)]
    while stack:
        folder, ancestors = stack.pop()
        real = os.path.realpath(folder)
        if real in ancestors:
            raise ConfigError(
                f"data.root={root}: {folder} is a link back to {real}, a folder that contains "
                "it (a symbolic-link loop), so listing it would never end. Remove the link or "
                "point it outside its own folder."
            )
        if real in seen:
            raise ConfigError(
                f"data.root={root}: {folder} leads to {real}, which the listing of this split "
                "has already read through another path (a second link to the same folder), so "
                "its images would be used twice. Remove one of the links."
            )
        seen.add(real)
        subfolders = []
        for e in _entries(folder, root):
            if e.name.startswith("."):
                scan.hidden.append(e.path)
                continue
            kind = _kind(e, root)
            if kind == "dir":
                subfolders.append((Path(e.path), (*ancestors, real)))
            elif kind == "file" and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
                images.append(e.path)
                if folder != class_dir:
                    scan.nested.append(e.path)
            else:
                scan.ignored.append(e.path)
        stack.extend(reversed(subfolders))
    return [Path(p) for p in sorted(images)]


def _split_classes(split_dir: Path, root: Path, scan: TreeScan) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    seen: set[str] = set()
    for e in _entries(split_dir, root):
        if e.name.startswith("."):
            scan.hidden.append(e.path)
        elif _kind(e, root) == "dir":
            classes[e.name] = _class_images(Path(e.path), root, seen, scan)
        else:  # a file beside the class folders belongs to no class
            scan.ignored.append(e.path)
    return classes


def _names(classes: list[str]) -> str:
    return ", ".join(repr(c) for c in classes)


def scan_tree(root: Path) -> TreeScan:
    """List the tree and check it is usable: at least 2 classes, the same ones in both splits,
    each with training and test images."""
    if not is_tree(root):
        raise ConfigError(
            f"data.root={root} is not a class-folder tree: expected {root}/train/<class>/ and "
            f"{root}/test/<class>/ directories of images."
        )
    scan = TreeScan()
    scan.files = {split: _split_classes(root / split, root, scan) for split in SPLITS}
    train, test = scan.files["train"], scan.files["test"]
    with_images = [c for c, files in train.items() if files]
    if len(with_images) < 2:
        raise ConfigError(
            f"data.root={root} has {len(with_images)} class folder(s) with images under train/; "
            "a classification task needs at least 2."
        )
    only_train = sorted(set(train) - set(test))
    only_test = sorted(set(test) - set(train))
    if only_train or only_test:
        parts = [f"only in train/: {_names(only_train)}"] if only_train else []
        parts += [f"only in test/: {_names(only_test)}"] if only_test else []
        raise ConfigError(
            f"data.root={root}: train/ and test/ must hold the same class folders, but they "
            f"differ ({'; '.join(parts)}). Add the missing folders or remove the extra ones."
        )
    empty = [c for c, files in train.items() if not files]
    if empty:
        raise ConfigError(
            f"data.root={root}: class folder(s) {_names(empty)} under train/ hold no image files; "
            "every class needs training images. Add images or remove the folder(s) from both "
            "splits."
        )
    missing = [c for c in train if not test[c]]
    if missing:
        raise ConfigError(
            f"data.root={root}: class(es) {', '.join(missing)} have training images but none "
            "under test/; every class needs test images for evaluation."
        )
    return scan
