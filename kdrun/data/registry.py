"""Data sources: a name, a cheap `describe` for validation, and a `load` that yields tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from omegaconf import DictConfig

from kdrun.store.cache import ArtifactCache


@dataclass
class ImageSplit:
    """A whole split in memory: uint8 images (N, 3, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class ImageDataset:
    train: ImageSplit
    test: ImageSplit
    classes: list[str]
    identity: str  # hash of what determines the pixels; part of every downstream cache key
    # What a class-folder tree held besides the images used (0 for the other sources), so the
    # run's record can say how many files were left out and why:
    files_ignored: int = 0  # no image suffix, or not a regular file (e.g. a broken link)
    files_hidden: int = 0  # names starting with '.', files or folders (a folder counts once)
    files_unreadable: int = 0  # image files that failed to decode (train + test)
    images_nested: int = 0  # images used from sub-folders of class folders (already counted)


@dataclass
class SourceInfo:
    """What validation needs to know without decoding any image."""

    classes: list[str]
    train_counts: list[int]
    test_counts: list[int] | None = None  # None: unknown before decoding


class DataSource(Protocol):
    def describe(self, cfg: DictConfig) -> SourceInfo: ...

    def identity(self, cfg: DictConfig) -> str:
        """The loaded set's `identity`, computed without decoding (a finished run's proof)."""
        ...

    def load(self, cfg: DictConfig, cache: ArtifactCache) -> ImageDataset: ...


DATA_SOURCES: dict[str, DataSource] = {}


def register_source(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in DATA_SOURCES:
            raise ValueError(f"data source {name!r} is registered twice")
        DATA_SOURCES[name] = cls()
        return cls

    return wrap


def get_source(name: str) -> DataSource:
    from kdrun.errors import ConfigError

    if name not in DATA_SOURCES:
        raise ConfigError(
            f"data.source={name!r} is unknown; choose one of: {', '.join(sorted(DATA_SOURCES))}."
        )
    return DATA_SOURCES[name]
