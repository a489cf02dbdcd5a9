"""A procedurally generated 10-class image set: learnable, deterministic, no disk, no network."""

from __future__ import annotations

from omegaconf import DictConfig

from kdrun.data.registry import ImageDataset, ImageSplit, SourceInfo, register_source
from kdrun.data.synthetic_images import SYNTHETIC_CLASSES, make_synthetic_split
from kdrun.errors import ConfigError
from kdrun.store.cache import ArtifactCache, digest


@register_source("synthetic")
class SyntheticSource:
    """For CI and tests: shapes and textures with random colours, placement and noise."""

    def describe(self, cfg: DictConfig) -> SourceInfo:
        n = cfg.num_classes
        if not 2 <= n <= len(SYNTHETIC_CLASSES):
            raise ConfigError(
                f"data.num_classes={n} is invalid for data=synthetic: it must be between 2 and "
                f"{len(SYNTHETIC_CLASSES)}."
            )
        for key in ("train_per_class", "test_per_class"):
            if cfg[key] < 1:
                raise ConfigError(f"data.{key}={cfg[key]} is invalid: it must be >= 1.")
        return SourceInfo(
            classes=list(SYNTHETIC_CLASSES[:n]),
            train_counts=[cfg.train_per_class] * n,
            test_counts=[cfg.test_per_class] * n,
        )

    def identity(self, cfg: DictConfig) -> str:
        return digest(
            {
                "source": "synthetic",
                "n": cfg.num_classes,
                "train": cfg.train_per_class,
                "test": cfg.test_per_class,
                "size": cfg.image_size,
                "seed": cfg.synthetic_seed,
                "v": 1,
            }
        )

    def load(self, cfg: DictConfig, cache: ArtifactCache) -> ImageDataset:
        n, size, seed = cfg.num_classes, cfg.image_size, cfg.synthetic_seed
        train = ImageSplit(*make_synthetic_split(n, cfg.train_per_class, size, seed))
        test = ImageSplit(*make_synthetic_split(n, cfg.test_per_class, size, seed + 1))
        return ImageDataset(train, test, list(SYNTHETIC_CLASSES[:n]), self.identity(cfg))
