"""DeepInversion's BatchNorm-statistics loss (Yin et al. 2020; NVlabs' r_feature hook): a
network's BatchNorm layers remember the mean and variance of their inputs over the training
set, so images whose statistics match them, layer by layer, look like training images to it."""

from __future__ import annotations

import torch
from torch import nn


class BatchNormStatistics:
    """Forward hooks on every BatchNorm layer of `model`; `pop()` returns, summed over layers,
    ||batch mean - running mean||_2 + ||batch variance - running variance||_2 of each layer's
    input, for the forward passes since the last pop."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.terms: list[torch.Tensor] = []
        self.handles: list = []

    def __enter__(self) -> BatchNormStatistics:
        self.handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.terms = [], []

    def _hook(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        x = inputs[0].float()
        # Reduce the contiguous spatial dims first (per image and channel), then the batch:
        # about twice as fast on CPU as one reduction over (N, H, W) or NVlabs' permuted copy.
        spatial = tuple(range(2, x.dim()))
        if spatial:
            per_image = x.mean(spatial)
            squares = torch.linalg.vector_norm(x, dim=spatial).square() / x[0, 0].numel()
        else:  # BatchNorm1d on (N, C)
            per_image, squares = x, x.square()
        mean = per_image.mean(0)
        var = squares.mean(0) - mean.square()
        self.terms.append(
            torch.linalg.vector_norm(mean - layer.running_mean)
            + torch.linalg.vector_norm(var - layer.running_var)
        )

    def pop(self) -> torch.Tensor:
        total = torch.stack(self.terms).sum() if self.terms else torch.zeros(())
        self.terms = []
        return total


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """DeepInversion's image prior: L2 norms of horizontal, vertical and diagonal differences."""
    return (
        torch.linalg.vector_norm(x[:, :, :, :-1] - x[:, :, :, 1:])
        + torch.linalg.vector_norm(x[:, :, :-1, :] - x[:, :, 1:, :])
        + torch.linalg.vector_norm(x[:, :, 1:, :-1] - x[:, :, :-1, 1:])
        + torch.linalg.vector_norm(x[:, :, :-1, :-1] - x[:, :, 1:, 1:])
    )
