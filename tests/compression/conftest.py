"""Tiny models and data shared by the compression tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

NUM_CLASSES = 10


class TinyCNN(nn.Module):
    """conv-bn-relu x2, global average pool, linear: 1x16x16 inputs, 10 classes."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    model = TinyCNN()
    _settle_batchnorm(model)
    return model.eval()


@pytest.fixture
def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(32, 1, 16, 16, generator=generator)
    targets = torch.randint(0, NUM_CLASSES, (32,), generator=generator)
    return DataLoader(TensorDataset(inputs, targets), batch_size=8)


@pytest.fixture
def batch(loader: DataLoader) -> torch.Tensor:
    return next(iter(loader))[0]


def _settle_batchnorm(model: nn.Module) -> None:
    """Give BatchNorm realistic running statistics (not the 0/1 defaults)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 16, 16))


@pytest.fixture
def untouched() -> Callable[[nn.Module], Callable[[], None]]:
    """``check = untouched(model)`` records the model; ``check()`` asserts nothing in it changed."""

    def record(model: nn.Module) -> Callable[[], None]:
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        kinds = [type(m) for m in model.modules()]
        training = model.training

        def check() -> None:
            after = model.state_dict()
            assert after.keys() == before.keys()
            for key, value in before.items():
                assert after[key].dtype == value.dtype, key
                assert torch.equal(after[key], value), key
            assert [type(m) for m in model.modules()] == kinds
            assert model.training == training

        return check

    return record
