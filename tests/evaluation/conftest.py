"""Small models and their quantized versions shared by the ops and size tests."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.ao.quantization import (
    DeQuantStub,
    QuantStub,
    convert,
    fuse_modules,
    get_default_qconfig,
    get_default_qconfig_mapping,
    prepare,
)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torchvision.models.resnet import BasicBlock, conv1x1

CNN_INPUT_SHAPE = (1, 3, 16, 16)


class SmallCNN(nn.Module):
    """Conv, depthwise conv, pointwise conv and a Linear head; every MAC-doing layer quantizable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 16, 1)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _calibrate(model: nn.Module, shape: tuple[int, ...], batches: int = 3) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(shape, generator=generator))


def quantize_eager(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Eager static int8 PTQ of a SmallCNN (conv+relu fused), wrapped in Quant/DeQuant stubs."""
    wrapped = nn.Sequential(QuantStub(), copy.deepcopy(model).eval(), DeQuantStub()).eval()
    fuse_modules(
        wrapped[1], [["conv1", "relu1"], ["conv2", "relu2"], ["conv3", "relu3"]], inplace=True
    )
    wrapped.qconfig = get_default_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(wrapped)
        _calibrate(prepared, shape)
        return convert(prepared)


def quantize_fx(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """FX static int8 PTQ with the x86 default qconfig mapping."""
    example = (torch.rand(shape),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(
            copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example
        )
        _calibrate(prepared, shape)
        return convert_fx(prepared)


@pytest.fixture()
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture()
def cnn_input() -> torch.Tensor:
    return torch.rand(CNN_INPUT_SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def eager_int8_cnn(small_cnn: SmallCNN) -> nn.Module:
    return quantize_eager(small_cnn, CNN_INPUT_SHAPE)


@pytest.fixture()
def fx_int8_cnn(small_cnn: SmallCNN) -> nn.Module:
    return quantize_fx(small_cnn, CNN_INPUT_SHAPE)


@pytest.fixture()
def cnn_quantizer() -> Callable[[nn.Module], nn.Module]:
    """FX int8 PTQ for a model taking CNN_INPUT_SHAPE inputs (for tests that edit weights first)."""
    return lambda model: quantize_fx(model, CNN_INPUT_SHAPE)


def _stage(c_in: int, c_out: int, stride: int) -> BasicBlock:
    downsample = None
    if c_in != c_out or stride != 1:
        downsample = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))
    return BasicBlock(c_in, c_out, stride, downsample)


def resnet_ish(width: int = 32, classes: int = 10) -> nn.Module:
    """A CIFAR-style ResNet-8: stem, three torchvision BasicBlocks (width, 2x, 4x), linear head."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        _stage(width, width, 1),
        _stage(width, 2 * width, 2),
        _stage(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, classes),
    )


@pytest.fixture(scope="module")
def resnet_fx_int8() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(a float ResNet-ish model with BatchNorm, its FX int8 version, a 1x3x32x32 input)."""
    torch.manual_seed(0)
    shape = (1, 3, 32, 32)
    model = resnet_ish().eval()
    return model, quantize_fx(model, shape), torch.rand(shape)
