"""A trained tiny CNN on the built-in digits (real data) and its runtime exports, shared by the
runtime tests (module scope: each export is made once)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="session")
def digits():
    split = load_builtin("digits")
    train_data = DataLoader(split.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    return split, train_data, DataLoader(split.test, batch_size=128)


@pytest.fixture(scope="session")
def trained(digits):
    """tiny_cnn trained 4 epochs on digits (about 95 % top-1)."""
    split, train_data, _ = digits
    torch.manual_seed(0)
    model = build_model("tiny_cnn", len(split.classes), split.input_shape, seed=0)
    train(model, train_data, 4, 0.1, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def exported(trained, digits):
    """technique label -> compressed model: ptq, onnx/openvino fp32 and int8."""
    _, train_data, _ = digits
    recipes = {
        "ptq": ("ptq", {"calibration_batches": 8}),
        "onnx": ("onnx", {}),
        "onnx_int8": ("onnx", {"quantize": "int8", "calibration_batches": 8}),
        "openvino": ("openvino", {}),
        "openvino_int8": ("openvino", {"quantize": "int8", "calibration_batches": 8}),
    }
    return {
        label: compress(trained, technique, params, data=train_data, progress=False)
        for label, (technique, params) in recipes.items()
    }
