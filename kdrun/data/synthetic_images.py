"""Procedurally generated shape/texture images for fast, offline CI smoke runs.

Every class is a family of shapes or textures drawn with random foreground and background
colours, position, size or period, plus Gaussian pixel noise, so a small CNN has to look at
spatial structure: colour statistics alone carry no label information.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "diamond",
    "hstripes",
    "vstripes",
    "checker",
    "dots",
)

# Pixel noise std on the [0, 1] intensity scale; tuned so 200-shot training clearly beats 5-shot.
_NOISE_STD = 0.1
# Small shape tilt: at 15 degrees square/diamond/circle took too long to separate in 2 epochs.
_MAX_SHAPE_TILT = math.pi / 36
_MAX_STRIPE_TILT = math.pi / 18

_Grid = tuple[torch.Tensor, torch.Tensor]
_MaskFn = Callable[[torch.Generator, int, _Grid], torch.Tensor]


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    """Per-image scalars shaped (n, 1, 1) so they broadcast against (H, W) coordinate grids."""
    return low + (high - low) * torch.rand(n, 1, 1, generator=gen)


def _centred(gen: torch.Generator, n: int, grid: _Grid, tilt: float) -> _Grid:
    """Random centre and tilt, so shape classes are position- and roughly rotation-invariant."""
    xx, yy = grid
    dx = xx - _uniform(gen, n, 0.32, 0.68)
    dy = yy - _uniform(gen, n, 0.32, 0.68)
    theta = _uniform(gen, n, -tilt, tilt)
    cos, sin = torch.cos(theta), torch.sin(theta)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def _circle(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    """Untilted because a disc is rotation-invariant; shapes are sized to stay mostly in frame."""
    dx, dy = _centred(gen, n, grid, 0.0)
    radius = _uniform(gen, n, 0.2, 0.34)
    return dx.square() + dy.square() <= radius.square()


def _square(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    dx, dy = _centred(gen, n, grid, _MAX_SHAPE_TILT)
    half = _uniform(gen, n, 0.17, 0.3)
    return torch.maximum(dx.abs(), dy.abs()) <= half


def _triangle(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    """Always apex-up (up to the tilt) so it never overlaps the diamond class."""
    dx, dy = _centred(gen, n, grid, _MAX_SHAPE_TILT)
    size = _uniform(gen, n, 0.2, 0.34)
    # Apex at dy = -size, base at dy = +size, half-width growing linearly downwards.
    return (dy <= size) & (dx.abs() <= 0.6 * (dy + size))


def _cross(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    dx, dy = _centred(gen, n, grid, _MAX_SHAPE_TILT)
    arm = _uniform(gen, n, 0.22, 0.36)
    width = arm * _uniform(gen, n, 0.25, 0.4)
    ax, ay = dx.abs(), dy.abs()
    return ((ax <= width) & (ay <= arm)) | ((ay <= width) & (ax <= arm))


def _ring(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    """The outline counterpart of the disc, so the net must look past blob-vs-background cues."""
    dx, dy = _centred(gen, n, grid, 0.0)
    outer = _uniform(gen, n, 0.24, 0.36)
    inner = outer * _uniform(gen, n, 0.5, 0.7)
    dist2 = dx.square() + dy.square()
    return (dist2 <= outer.square()) & (dist2 >= inner.square())


def _diamond(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    dx, dy = _centred(gen, n, grid, _MAX_SHAPE_TILT)
    size = _uniform(gen, n, 0.24, 0.38)
    return dx.abs() + dy.abs() <= size


def _stripes(gen: torch.Generator, n: int, grid: _Grid, horizontal: bool) -> torch.Tensor:
    """The random centre doubles as the stripe phase; the tilt stays far from 45 degrees."""
    dx, dy = _centred(gen, n, grid, _MAX_STRIPE_TILT)
    period = _uniform(gen, n, 0.12, 0.3)
    coord = dy if horizontal else dx
    return torch.remainder(coord / period, 1.0) < 0.5


def _hstripes(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    return _stripes(gen, n, grid, horizontal=True)


def _vstripes(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    return _stripes(gen, n, grid, horizontal=False)


def _checker(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    """Cells are kept larger than a pixel or two so the pattern survives the noise at 32x32."""
    xx, yy = grid
    cell = _uniform(gen, n, 0.1, 0.22)
    ox = _uniform(gen, n, 0.0, 1.0)
    oy = _uniform(gen, n, 0.0, 1.0)
    parity = torch.floor(xx / cell + ox) + torch.floor(yy / cell + oy)
    return torch.remainder(parity, 2.0) < 0.5


def _dots(gen: torch.Generator, n: int, grid: _Grid) -> torch.Tensor:
    """Sparse dots (radius under a third of the period) so they never merge into a checkerboard."""
    xx, yy = grid
    period = _uniform(gen, n, 0.18, 0.3)
    radius = period * _uniform(gen, n, 0.2, 0.3)
    fx = torch.remainder(xx / period + _uniform(gen, n, 0.0, 1.0), 1.0) - 0.5
    fy = torch.remainder(yy / period + _uniform(gen, n, 0.0, 1.0), 1.0) - 0.5
    return (fx.square() + fy.square()) * period.square() <= radius.square()


_MASK_FNS: tuple[_MaskFn, ...] = (
    _circle,
    _square,
    _triangle,
    _cross,
    _ring,
    _diamond,
    _hstripes,
    _vstripes,
    _checker,
    _dots,
)


def _colours(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (foreground, background) pairs with a brightness gap in every channel.

    Which side is the lighter one is a coin flip, so the mean RGB stays uninformative about class.
    """
    dark = 0.45 * torch.rand(n, 3, generator=gen)
    light = dark + 0.35 + 0.2 * torch.rand(n, 3, generator=gen)
    light_on_dark = torch.rand(n, 1, generator=gen) < 0.5
    return torch.where(light_on_dark, light, dark), torch.where(light_on_dark, dark, light)


def make_synthetic_split(
    num_classes: int, per_class: int, image_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return uint8 images (N, 3, S, S) and int64 labels (N,), N = num_classes * per_class.

    Classes are interleaved (label of sample i is i % num_classes) so any prefix stays balanced;
    a fixed seed gives bit-identical output because only a private torch.Generator is used.
    """
    if not 1 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise ValueError(
            f"num_classes must be between 1 and {len(SYNTHETIC_CLASSES)}, got {num_classes}."
        )
    if per_class < 0 or image_size < 1:
        raise ValueError(
            f"per_class must be >= 0 and image_size >= 1, got {per_class} and {image_size}."
        )
    gen = torch.Generator(device="cpu").manual_seed(seed)
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
    grid = (coords.view(1, 1, -1), coords.view(1, -1, 1))
    # Work on the 0-255 scale in place with as few full-size passes as possible (speed matters).
    images = torch.empty(per_class, num_classes, 3, image_size, image_size)
    images.normal_(0.0, 255.0 * _NOISE_STD, generator=gen)
    for label, mask_fn in enumerate(_MASK_FNS[:num_classes]):
        mask = mask_fn(gen, per_class, grid).unsqueeze(1).to(images.dtype)
        foreground, background = _colours(gen, per_class)
        contrast = (255.0 * (foreground - background))[:, :, None, None]
        # The +0.5 turns the truncating uint8 cast below into round-to-nearest.
        offset = (255.0 * background + 0.5)[:, :, None, None]
        images[:, label].add_(offset).addcmul_(mask, contrast)
    images = images.clamp_(0.0, 255.99).to(torch.uint8).view(-1, 3, image_size, image_size)
    labels = torch.arange(num_classes, dtype=torch.int64).repeat(per_class)
    return images, labels
