"""Name -> factory registry so configs can pick architectures by string."""

from collections.abc import Callable

import torch
from torch import nn

from .torchvision_zoo import TORCHVISION_PREFIX, build_torchvision, torchvision_names

ModelFactory = Callable[[int], nn.Module]

MODELS: dict[str, ModelFactory] = {}

TORCHVISION_HINT = f"{TORCHVISION_PREFIX}<name>"


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a `factory(num_classes) -> nn.Module` under `name`; duplicates are a bug."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        if name.startswith(TORCHVISION_PREFIX):
            raise ValueError(f"model name {name!r} clashes with the {TORCHVISION_PREFIX!r} prefix")
        MODELS[name] = factory
        return factory

    return decorator


def model_names() -> list[str]:
    """All accepted arch values, for help texts and error messages."""
    return sorted([*MODELS, TORCHVISION_HINT])


def is_known_model(arch: str) -> bool:
    """Validate a config's arch without paying for building the model."""
    if arch.startswith(TORCHVISION_PREFIX):
        return arch.removeprefix(TORCHVISION_PREFIX) in torchvision_names()
    return arch in MODELS


def build_model(arch: str, num_classes: int) -> nn.Module:
    """Build a freshly initialised (never pretrained) model with a `num_classes`-way head."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if arch.startswith(TORCHVISION_PREFIX):
        return build_torchvision(arch.removeprefix(TORCHVISION_PREFIX), num_classes)
    if arch not in MODELS:
        raise ValueError(
            f"unknown model {arch!r}; choose one of: {', '.join(sorted(MODELS))}, "
            f"or {TORCHVISION_HINT} (e.g. {TORCHVISION_PREFIX}resnet18)"
        )
    return MODELS[arch](num_classes)


def build_meta_model(arch: str, num_classes: int) -> nn.Module:
    """`arch` on the meta device: shapes without weights, for checks that must cost
    milliseconds and no memory (input sizes, feature-layer shapes)."""
    with torch.device("meta"):
        return build_model(arch, num_classes)


def input_problem(arch: str, num_classes: int, image_size: int) -> str | None:
    """Why `arch` cannot take `image_size` inputs, or None; a shape-only forward pass."""
    try:
        with torch.device("meta"), torch.no_grad():
            build_meta_model(arch, num_classes).eval()(torch.empty(2, 3, image_size, image_size))
    except Exception as exc:  # any layer may object to the shape, each in its own words
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return None
