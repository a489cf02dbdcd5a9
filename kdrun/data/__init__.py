"""Data sources (one file each), the few-shot sampler and batched augmentation."""

from kdrun.data import cifar10, folder, synthetic  # noqa: F401  (register the sources)
from kdrun.data.registry import (
    DATA_SOURCES,
    ImageDataset,
    ImageSplit,
    SourceInfo,
    get_source,
    register_source,
)

__all__ = [
    "DATA_SOURCES",
    "ImageDataset",
    "ImageSplit",
    "SourceInfo",
    "get_source",
    "register_source",
]
