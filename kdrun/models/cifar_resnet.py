"""CIFAR ResNets as in RepDistiller/CRD (Tian et al.), the standard KD benchmark students."""

import torch
from torch import nn

from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2; `widths` = (stem, stage1, stage2, stage3) like RepDistiller's
    `num_filters`."""

    # What "auto" means for feature distillation: FitNets hint, RKD embedding, AT stages.
    feature_layers = {
        "hint": "layer2",
        "embedding": "pool",
        "attention": ("layer1", "layer2", "layer3"),
    }

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        if len(widths) != 4:
            raise ValueError(f"widths must be (stem, stage1, stage2, stage3), got {widths}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1 = self._make_layer(widths[0], widths[1], blocks, stride=1)
        self.layer2 = self._make_layer(widths[1], widths[2], blocks, stride=2)
        self.layer3 = self._make_layer(widths[2], widths[3], blocks, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


STANDARD_WIDTHS = (16, 16, 32, 64)
WIDE_WIDTHS = (32, 64, 128, 256)
HALF_WIDTHS = (8, 8, 16, 32)  # a thinned ResNet: ~1/4 of the parameters and MACs
DOUBLE_WIDTHS = (32, 32, 64, 128)  # a wider teacher: ~4x the parameters and MACs


@register_model("resnet8")
def resnet8(num_classes: int) -> CifarResNet:
    return CifarResNet(8, STANDARD_WIDTHS, num_classes)


@register_model("resnet14")
def resnet14(num_classes: int) -> CifarResNet:
    return CifarResNet(14, STANDARD_WIDTHS, num_classes)


@register_model("resnet20")
def resnet20(num_classes: int) -> CifarResNet:
    return CifarResNet(20, STANDARD_WIDTHS, num_classes)


@register_model("resnet32")
def resnet32(num_classes: int) -> CifarResNet:
    return CifarResNet(32, STANDARD_WIDTHS, num_classes)


@register_model("resnet44")
def resnet44(num_classes: int) -> CifarResNet:
    return CifarResNet(44, STANDARD_WIDTHS, num_classes)


@register_model("resnet56")
def resnet56(num_classes: int) -> CifarResNet:
    return CifarResNet(56, STANDARD_WIDTHS, num_classes)


@register_model("resnet110")
def resnet110(num_classes: int) -> CifarResNet:
    return CifarResNet(110, STANDARD_WIDTHS, num_classes)


@register_model("resnet8x4")
def resnet8x4(num_classes: int) -> CifarResNet:
    return CifarResNet(8, WIDE_WIDTHS, num_classes)


@register_model("resnet32x4")
def resnet32x4(num_classes: int) -> CifarResNet:
    return CifarResNet(32, WIDE_WIDTHS, num_classes)


@register_model("resnet20_half")
def resnet20_half(num_classes: int) -> CifarResNet:
    return CifarResNet(20, HALF_WIDTHS, num_classes)


@register_model("resnet20x2")
def resnet20x2(num_classes: int) -> CifarResNet:
    return CifarResNet(20, DOUBLE_WIDTHS, num_classes)
