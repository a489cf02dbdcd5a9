"""Random crop with padding and horizontal flip on whole batches, on the training device.

Per-image PIL transforms cost more than a small student on 2 CPU cores; indexing a padded
batch does the same job in one gather, driven by a seeded generator so runs repeat exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip_with(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Crop each zero-padded uint8 image at offset (dy, dx), flip where `flip`; per image, so a
    view is the same whatever batch it is rendered in."""
    b, c, h, w = images.shape
    dev = images.device
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        batch = torch.arange(b, device=dev)[:, None, None, None]
        chan = torch.arange(c, device=dev)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def crop_flip(
    images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Augment a uint8 batch (B, C, H, W) with fresh random offsets and flips."""
    n, dev = len(images), images.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    if flip:
        flips = torch.rand(n, generator=generator, device=dev) < 0.5
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=dev)
    return crop_flip_with(images, dy, dx, flips, padding)


class Normalize:
    """uint8 → float with the training split's per-channel mean and std."""

    def __init__(self, train_images: torch.Tensor, device: torch.device) -> None:
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        for chunk in train_images.split(4096):  # chunks keep peak memory flat on big splits
            x = chunk.to(torch.float64).div_(255)
            total += x.sum(dim=(0, 2, 3))
            squares += x.square().sum(dim=(0, 2, 3))
        n = train_images.numel() / train_images.shape[1]
        mean = total / n
        std = (squares / n - mean.square()).clamp_min(1e-6).sqrt()
        self.mean = mean.float().view(1, -1, 1, 1).to(device)
        self.std = std.float().view(1, -1, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255) - self.mean) / self.std
