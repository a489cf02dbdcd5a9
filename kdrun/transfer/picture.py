"""transfer.png: a grid of the images a transfer made, one row per class, so a user sees what
the student distils on before trusting its score."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from kdrun.store.storage import atomic_write

PER_CLASS = 10


def transfer_grid(images: torch.Tensor, targets: torch.Tensor, ways: int) -> torch.Tensor:
    """Up to PER_CLASS images of each target class in a (ways x PER_CLASS) grid, gaps black."""
    size = images.shape[-1]
    tiles = torch.zeros(ways, PER_CLASS, 3, size, size, dtype=torch.uint8)
    for c in range(ways):
        chosen = images[targets == c][:PER_CLASS]
        tiles[c, : len(chosen)] = chosen
    return make_grid(tiles.flatten(0, 1).float() / 255, nrow=PER_CLASS, padding=1)


def save_transfer_png(path: Path, images: torch.Tensor, targets: torch.Tensor, ways: int) -> None:
    grid = transfer_grid(images, targets, ways)
    atomic_write(path, lambda f: save_image(grid, f, format="png"))
