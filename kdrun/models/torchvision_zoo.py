"""Randomly initialised torchvision classifiers, for teachers/students beyond the CIFAR zoo.

Weights are never downloaded. Models with adaptive pooling (resnet18/34/50, wide_resnet,
resnext, mobilenet, efficientnet, regnet, densenet, convnext, swin, vgg, ...) run on 32x32
inputs; alexnet, inception_v3, maxvit_t and the vit_* family need larger (vit: exactly 224)
inputs.
"""

from functools import cache

import torchvision
from torch import nn

TORCHVISION_PREFIX = "torchvision:"

_EXAMPLES = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "vgg11_bn")


@cache
def torchvision_names() -> frozenset[str]:
    """Classification builders only; detection/segmentation/video models live in submodules."""
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, num_classes: int) -> nn.Module:
    """Build torchvision model `name` from scratch with its head sized to `num_classes`."""
    if name not in torchvision_names():
        raise ValueError(
            f"unknown torchvision model {name!r}; use a classification model from "
            f"torchvision.models.list_models(), e.g. {', '.join(_EXAMPLES)}"
        )
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
