"""A tiny trained model and loader for the search tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from netzip_mlflow.models.zoo import build_model


@pytest.fixture
def tiny_loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.fixture
def tiny_model():
    return build_model("tiny_cnn", 10, (1, 8, 8), seed=0).eval()
