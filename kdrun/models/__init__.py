"""Model zoo: build any supported architecture by name via `build_model`."""

from . import cifar_resnet, cnn  # noqa: F401  (imported so their models register)
from .registry import (
    MODELS,
    build_meta_model,
    build_model,
    input_problem,
    is_known_model,
    model_names,
    register_model,
)

__all__ = [
    "MODELS",
    "build_meta_model",
    "build_model",
    "input_problem",
    "is_known_model",
    "model_names",
    "register_model",
]
