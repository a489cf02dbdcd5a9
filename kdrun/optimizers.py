"""The optimisers a stage can train with, by name: `teacher.optimizer` / `student.optimizer`.

A new one is a function here and a name in OPTIMIZERS; `momentum` is SGD's momentum and the
Adam family's beta1, so one key sweeps both."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

OptimizerFactory = Callable[
    [Iterable[torch.nn.Parameter], float, float, float], torch.optim.Optimizer
]
OPTIMIZERS: dict[str, OptimizerFactory] = {}


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    def add(factory: OptimizerFactory) -> OptimizerFactory:
        OPTIMIZERS[name] = factory
        return factory

    return add


@register_optimizer("sgd")
def sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Nesterov momentum when momentum > 0; L2 weight decay through the gradient."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )


@register_optimizer("adam")
def adam(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """L2 weight decay through the gradient, as Adam was published."""
    return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


@register_optimizer("adamw")
def adamw(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Decoupled weight decay (Loshchilov & Hutter), applied as lr * weight_decay per step."""
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](params, lr, momentum, weight_decay)
