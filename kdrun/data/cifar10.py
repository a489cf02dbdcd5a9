"""CIFAR-10 from torchvision's files (downloaded when allowed) or from a class-folder copy."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from kdrun.data.folder import (
    describe_tree,
    load_tree,
    pixel_cap,
    resolve_root,
    tree_identity,
)
from kdrun.data.folder_scan import is_tree
from kdrun.data.registry import ImageDataset, ImageSplit, SourceInfo, register_source
from kdrun.errors import ConfigError
from kdrun.store.cache import ArtifactCache, digest
from kdrun.store.storage import missing_dirs, remove_empty_dirs

log = logging.getLogger(__name__)

CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
TRAIN_PER_CLASS = 5000
TEST_PER_CLASS = 1000
BATCHES_DIR = "cifar-10-batches-py"
# `make run` passes DATA_ROOT as data.root with data.download=false (Makefile, README).
MAKE_HINT = "make run DATA_ROOT=/path/to/cifar10"


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def _torchvision_split(root: Path, train: bool, download: bool, size: int) -> ImageSplit:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=train, download=download)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(_resize(images, size), torch.tensor(ds.targets, dtype=torch.int64))


def failed_checksum(root: Path) -> str:
    """The first file of torchvision's CIFAR-10 batches that is missing or fails its MD5, as
    a path; "" when every file checks (or there is no batches folder). Called only after
    torchvision refused the folder, so a good copy is hashed once, by torchvision."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    folder = root / BATCHES_DIR
    if not folder.is_dir():
        return ""
    for name, md5 in [
        *CIFAR10.train_list,
        *CIFAR10.test_list,
        [CIFAR10.meta["filename"], CIFAR10.meta["md5"]],
    ]:
        path = folder / name
        if not path.is_file() or path.stat().st_size > 1 << 30:
            return f"{path} (missing, or not a regular file)"
        if not check_integrity(str(path), md5):
            return str(path)
    return ""


@register_source("cifar10")
class Cifar10Source:
    """Prefers a class-folder tree at `data.root`, then torchvision's pickled batches there."""

    def describe(self, cfg: DictConfig) -> SourceInfo:
        root = resolve_root(cfg.root)
        if is_tree(root):
            return describe_tree(root)
        if not (root / BATCHES_DIR).is_dir() and not cfg.download:
            raise ConfigError(
                f"data.root={root} holds no CIFAR-10 (neither {BATCHES_DIR}/ nor train/<class>/ "
                "images) and data.download=false; set data.download=true or point data.root at "
                f"a copy (from the Makefile: {MAKE_HINT})."
            )
        return SourceInfo(
            classes=list(CLASSES),
            train_counts=[TRAIN_PER_CLASS] * len(CLASSES),
            test_counts=[TEST_PER_CLASS] * len(CLASSES),
        )

    def identity(self, cfg: DictConfig) -> str:
        """A class-folder copy: its file fingerprint. torchvision's batches: a constant, since
        torchvision checks each batch file's MD5 against the published one on every load."""
        root = resolve_root(cfg.root)
        if is_tree(root):
            return tree_identity(root, cfg.image_size, "cifar10", pixel_cap(cfg))
        return digest({"source": "cifar10-torchvision", "size": cfg.image_size, "v": 1})

    def load(self, cfg: DictConfig, cache: ArtifactCache) -> ImageDataset:
        root = resolve_root(cfg.root)
        if is_tree(root):
            return load_tree(root, cfg.image_size, cache, "cifar10", pixel_cap(cfg))
        if not (root / BATCHES_DIR).is_dir():
            log.info("downloading CIFAR-10 to %s", root)
        made = missing_dirs(root)  # torchvision creates data.root before it downloads
        try:
            train = _torchvision_split(root, True, cfg.download, cfg.image_size)
            test = _torchvision_split(root, False, cfg.download, cfg.image_size)
        except (OSError, RuntimeError) as exc:
            remove_empty_dirs(made)  # a failed download leaves no empty data/cifar10/
            failed = failed_checksum(root)
            if failed:
                raise ConfigError(
                    f"data.root={root}: {failed} does not match CIFAR-10's published MD5 "
                    "checksum (edited, truncated or from another data set); restore that file "
                    f"from a good copy, or delete {root / BATCHES_DIR} and run once with "
                    "data.download=true."
                ) from exc
            raise ConfigError(
                f"could not read or download CIFAR-10 at data.root={root} ({exc}); with no "
                "network, point data.root at an existing copy and set data.download=false "
                f"(from the Makefile: {MAKE_HINT})."
            ) from exc
        return ImageDataset(train, test, list(CLASSES), self.identity(cfg))
