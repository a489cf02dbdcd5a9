"""The one check for NaN and infinite values, shared by the training loop, the soft labels, the
cache and the checkpoint loader: a non-finite number anywhere makes every later one meaningless."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def nonfinite_count(tensor: torch.Tensor) -> int:
    """NaN and ±Inf values in a floating-point or complex tensor; 0 for integer ones."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def first_nonfinite(named: Iterable[tuple[str, object]]) -> tuple[str, int] | None:
    """The name and count of the first tensor holding a non-finite value, if any."""
    for name, value in named:
        if isinstance(value, torch.Tensor) and (bad := nonfinite_count(value)):
            return name, bad
    return None
