"""The shared layer-tensor walk: which tensors count, their bit-widths and their zeros."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from netzip_mlflow.evaluation.weights import (
    ROOT_NAME,
    count_nonzero,
    dtype_bits,
    iter_layer_tensors,
)


@pytest.mark.parametrize(
    ("dtype", "bits"),
    [
        (torch.float32, 32),
        (torch.float16, 16),
        (torch.bfloat16, 16),
        (torch.qint8, 8),
        (torch.quint8, 8),
        (torch.qint32, 32),
        (torch.quint4x2, 4),
    ],
)
def test_dtype_bits(dtype: torch.dtype, bits: int) -> None:
    assert dtype_bits(dtype) == bits


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning")
def test_quantized_zeros_are_integers_equal_to_the_zero_point() -> None:
    values = torch.tensor([[0.0, 0.5, 0.0, -0.25], [1.0, 0.0, 0.0, 0.0]])
    per_tensor = torch.quantize_per_tensor(values, scale=0.25, zero_point=7, dtype=torch.quint8)
    assert int((per_tensor.int_repr() == 0).sum()) == 0  # raw integers are never 0 here
    assert count_nonzero(per_tensor) == 3
    per_channel = torch.quantize_per_channel(
        values, torch.tensor([0.25, 0.5]), torch.tensor([3, -2]), axis=0, dtype=torch.qint8
    )
    assert count_nonzero(per_channel) == 3


def test_quantized_layers_yield_their_packed_tensors(eager_int8_cnn: nn.Module) -> None:
    layers = {layer.name: layer for layer in iter_layer_tensors(eager_int8_cnn)}
    assert set(layers) == {"1.conv1", "1.conv2", "1.conv3", "1.fc"}
    for layer in layers.values():
        assert layer.weights[0].dtype == torch.qint8 and layer.bits == 8
        assert layer.biases[0].dtype == torch.float32


def test_a_model_that_is_one_layer_is_named_root_and_splits_weights_from_biases() -> None:
    (layer,) = iter_layer_tensors(nn.Linear(3, 2))
    assert layer.name == ROOT_NAME
    assert [t.shape for t in layer.weights] == [torch.Size([2, 3])]
    assert [t.shape for t in layer.biases] == [torch.Size([2])]


def test_weight_density_ignores_biases() -> None:
    linear = nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight[0] = 0.0
        linear.bias.zero_()
    (layer,) = iter_layer_tensors(linear)
    assert layer.weight_density == 0.5
    assert (layer.params, layer.params_nonzero) == (10, 4)


def test_parametrized_weights_count_as_their_computed_value() -> None:
    class HalfZero(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(weight[:1]), weight[1:]])

    linear = nn.Linear(3, 2, bias=False)
    parametrize.register_parametrization(linear, "weight", HalfZero())
    model = nn.Sequential(linear)
    (layer,) = iter_layer_tensors(model)
    assert layer.name == "0"
    assert (layer.params, layer.params_nonzero) == (6, 3)
