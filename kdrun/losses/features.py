"""Intermediate features by module name: forward hooks, layer resolution and shape probing.

Models declare which of their modules play which role (`feature_layers`, e.g. the FitNets hint
or the embedding before the classifier); a config can also name any submodule directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import torch
from torch import nn

from kdrun.errors import ConfigError


def resolve_layers(model: nn.Module, spec: str, role: str, key: str) -> tuple[str, ...]:
    """`spec` is "auto" (the model's declared layers for `role`) or comma-separated names."""
    modules = dict(model.named_modules())
    if spec == "auto":
        declared = getattr(model, "feature_layers", {}).get(role)
        if declared is None:
            raise ConfigError(
                f"{key}=auto: {type(model).__name__} declares no {role!r} layer; set {key} to "
                f"module names, e.g. one of: {', '.join(n for n, _ in model.named_children())}."
            )
        return (declared,) if isinstance(declared, str) else tuple(declared)
    names = tuple(part.strip() for part in spec.split(",") if part.strip())
    unknown = [n for n in names if n not in modules or not n]
    if unknown or not names:
        raise ConfigError(
            f"{key}={spec!r}: no module named {', '.join(unknown) or '(empty)'} in "
            f"{type(model).__name__}; top-level modules: "
            f"{', '.join(n for n, _ in model.named_children())}."
        )
    return names


class FeatureTap:
    """Records the outputs of named submodules on every forward, until closed."""

    def __init__(self, model: nn.Module, layers: Iterable[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._hooks = [
            model.get_submodule(name).register_forward_hook(self._saver(name)) for name in layers
        ]

    def _saver(self, name: str):
        def save(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.features[name] = output

        return save

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@torch.no_grad()
def probe_features(
    model: nn.Module, layers: Iterable[str], sample: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One eval-mode forward of `sample` with the named outputs captured, on the model's device
    (the meta device works: callers only read shapes)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with FeatureTap(model, layers) as tap:
            model(sample.to(device))
        return {k: v.detach() for k, v in tap.features.items()}
    finally:
        model.train(was_training)


def flat(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, D): embeddings from a pooled map or a linear layer alike."""
    return x.float().flatten(1)


def pool_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool a (B, C, H, W) map down to size x size (no-op when already there)."""
    if x.dim() != 4 or x.shape[-1] == size:
        return x
    return nn.functional.adaptive_avg_pool2d(x, size)
