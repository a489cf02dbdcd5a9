"""Plain two-conv CNNs: the classic small teacher/student pair from the KD literature."""

import torch
from torch import nn

from .registry import register_model

INPUT_SIZE = 32


def _check_input_size(x: torch.Tensor) -> torch.Tensor:
    """The flatten layer is sized for 32x32; fail with a readable message instead of a matmul."""
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(
            f"this CNN expects {INPUT_SIZE}x{INPUT_SIZE} inputs, got {tuple(x.shape[-2:])}"
        )
    return x


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CNN(nn.Module):
    """conv-pool, conv-pool, hidden FC, classifier; no BN or dropout so it stays simple."""

    # What "auto" means for feature distillation: FitNets hint, RKD embedding, AT stages.
    feature_layers = {"hint": "conv2", "embedding": "hidden", "attention": ("conv1", "conv2")}

    def __init__(self, channels: tuple[int, int], hidden: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = _conv_block(3, channels[0])
        self.conv2 = _conv_block(channels[0], channels[1])
        spatial = INPUT_SIZE // 4
        self.hidden = nn.Sequential(
            nn.Linear(channels[1] * spatial * spatial, hidden), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(_check_input_size(x)))
        return self.fc(self.hidden(torch.flatten(x, 1)))


@register_model("cnn_large")
def cnn_large(num_classes: int) -> CNN:
    """The teacher-sized variant (~8.5M params)."""
    return CNN((64, 128), 1024, num_classes)


@register_model("cnn_small")
def cnn_small(num_classes: int) -> CNN:
    """The student-sized variant (~1.1M params)."""
    return CNN((32, 64), 256, num_classes)
