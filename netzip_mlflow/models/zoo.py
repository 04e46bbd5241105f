"""Built-in architectures, built with random weights (no download), adapted to the input size."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from netzip_mlflow.errors import ConfigError


def resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """torchvision's ResNet18 with its stem adapted to the input.

    For images of 64 pixels or more the ImageNet stem is kept (7x7/2 conv + max-pool). Smaller
    images get a 3x3 stem without max-pool, stride 2 from 24 pixels up (28x28 MNIST: 14x14 into
    layer1, about 0.12 GMACs) and stride 1 below (8x8 digits), so the network keeps spatial extent.
    """
    channels, height, _ = input_shape
    model = torchvision.models.resnet18(num_classes=num_classes)
    if height >= 64:
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        return model
    stride = 2 if height >= 24 else 1
    model.conv1 = nn.Conv2d(channels, 64, 3, stride, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


class TinyCNN(nn.Module):
    """A small conv net (two conv-bn-relu blocks, global pooling, a linear head) for quick tests."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 16) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """:class:`TinyCNN` with its default width."""
    return TinyCNN(num_classes, input_shape)


ARCHITECTURES: dict[str, Callable[[int, tuple[int, int, int]], nn.Module]] = {
    "resnet18": resnet18,
    "tiny_cnn": tiny_cnn,
}


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int], seed: int = 0) -> nn.Module:
    """Build a built-in architecture with seeded random weights."""
    if arch not in ARCHITECTURES:
        raise ConfigError("model.arch", f"unknown architecture {arch!r}", f"use one of {sorted(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return ARCHITECTURES[arch](num_classes, input_shape)
