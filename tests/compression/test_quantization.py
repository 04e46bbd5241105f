"""ptq, ptq_dynamic, fp16 and qat on tiny models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.ao.quantization import FakeQuantizeBase
from torch.utils.data import DataLoader

from netzip_mlflow.compression.eager import find_fusable
from netzip_mlflow.compression.quantization import prepare_qat
from netzip_mlflow.compression.registry import compress
from netzip_mlflow.errors import CompressionError, ModelError

STATIC_INT8 = (nnq.Conv2d, nnq.Linear, nniq.ConvReLU2d, nniq.LinearReLU)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, eager mode can quantize it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.hidden = nn.Linear(16, 16)
        self.act = nn.ReLU()
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = self.features(x)
        return self.classifier(self.act(self.hidden(torch.flatten(x, 1))))


class Exp(nn.Module):
    """Control flow (no FX) and an op with no int8 kernel (no eager int8 either)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = torch.exp(x)
        return x


class Unquantizable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.exp = Exp()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.exp(self.conv(x))), 1))


def _int8_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, STATIC_INT8)]


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


# --------------------------------------------------------------------------------------------- ptq


def test_ptq_fx_gives_int8_layers_and_close_outputs(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    result = compress(tiny_cnn, "ptq", {"calibration_batches": 3}, data=loader, progress=False)
    check()
    assert result.model is not tiny_cnn
    assert result.info["quantization_mode"] == "fx"
    assert result.info["calibration_batches"] == 3
    assert torch.backends.quantized.engine == "x86"
    # both convs are fused with their BN and ReLU, the classifier is an int8 Linear
    assert sum(isinstance(m, nniq.ConvReLU2d) for m in result.model.modules()) == 2
    assert sum(isinstance(m, nnq.Linear) for m in result.model.modules()) == 1
    assert result.info["quantized_layers"] == 3
    with torch.no_grad():
        exact, approx = tiny_cnn(batch), result.model(batch)
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert _relative_error(approx, exact) < 0.1


def test_ptq_calibration_uses_what_the_data_has(tiny_cnn: nn.Module, loader: DataLoader) -> None:
    result = compress(tiny_cnn, "ptq", {"calibration_batches": 50}, data=loader, progress=False)
    assert result.info["calibration_batches"] == len(loader)


def test_ptq_qnnpack_backend_is_selected(tiny_cnn: nn.Module, loader: DataLoader) -> None:
    try:
        result = compress(tiny_cnn, "ptq", {"backend": "qnnpack"}, data=loader)
        assert torch.backends.quantized.engine == "qnnpack"
        assert result.info["backend"] == "qnnpack"
        assert _int8_layers(result.model)
    finally:
        torch.backends.quantized.engine = "x86"


def test_ptq_falls_back_to_eager_mode_when_fx_cannot_trace(
    loader: DataLoader, batch: torch.Tensor, untouched: Callable
) -> None:
    torch.manual_seed(0)
    model = Branchy().eval()
    check = untouched(model)
    result = compress(model, "ptq", data=loader)
    check()
    assert result.info["quantization_mode"] == "eager"
    assert "TraceError" in result.info["fx_fallback_reason"]
    # conv-bn-relu, conv-relu and linear-relu fused
    assert result.info["fused_groups"] == 3
    assert len(_int8_layers(result.model)) == 4
    with torch.no_grad():
        exact, approx = model(batch), result.model(batch)
    assert approx.shape == exact.shape
    assert _relative_error(approx, exact) < 0.1


def test_ptq_names_the_module_that_cannot_run_in_int8(loader: DataLoader) -> None:
    with pytest.raises(CompressionError, match=r"module exp \(Exp\) cannot run"):
        compress(Unquantizable(), "ptq", data=loader)


def test_inputs_the_model_cannot_take_are_a_model_error(tiny_cnn: nn.Module) -> None:
    wrong = [(torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long))]  # 3 channels, not 1
    match = r"cannot run on the example inputs of shape \(4, 3, 16, 16\)"
    with pytest.raises(ModelError, match=match):
        compress(tiny_cnn, "ptq", data=wrong)


def test_find_fusable_follows_the_data_not_the_attribute_order() -> None:
    class Shared(nn.Module):
        """bn1 declared before conv1; one ReLU module used twice (never fused away)."""

        def __init__(self) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(4)
            self.conv1 = nn.Conv2d(1, 4, 3)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 4, 3)
            self.fc = nn.Linear(4, 2)
            self.fc_relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.relu(self.conv2(x)).mean((2, 3))
            return self.fc_relu(self.fc(x))

    groups = find_fusable(Shared().eval(), torch.randn(1, 1, 8, 8))
    assert groups == [["conv1", "bn1"], ["fc", "fc_relu"]]


# ------------------------------------------------------------------------------------- ptq_dynamic


def test_ptq_dynamic_quantizes_the_linear_layers(
    tiny_cnn: nn.Module, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    result = compress(tiny_cnn, "ptq_dynamic", example_inputs=batch)
    check()
    assert isinstance(result.model.classifier, nnqd.Linear)
    assert isinstance(result.model.features[0], nn.Conv2d)  # convolutions stay float
    assert result.info["quantized_layers"] == 1
    assert result.info["quantized_layer_names"] == "classifier"
    with torch.no_grad():
        assert result.model(batch).shape == tiny_cnn(batch).shape


def test_ptq_dynamic_quantizes_lstm() -> None:
    model = nn.Sequential(nn.LSTM(4, 8, batch_first=True))
    result = compress(model, "ptq_dynamic")
    assert isinstance(result.model[0], nnqd.LSTM)
    assert result.info["quantized_layer_names"] == "0"


def test_ptq_dynamic_without_linear_layers_says_so() -> None:
    with pytest.raises(CompressionError, match="no Linear, LSTM, GRU layer"):
        compress(nn.Sequential(nn.Conv2d(1, 2, 3)), "ptq_dynamic")


# -------------------------------------------------------------------------------------------- fp16


def test_fp16_halves_every_weight(
    tiny_cnn: nn.Module, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    result = compress(tiny_cnn, "fp16", example_inputs=batch)
    check()
    tensors = [*result.model.parameters(), *result.model.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    assert floating and all(t.dtype == torch.float16 for t in floating)
    assert result.info == {"dtype": "float16", "converted_tensors": len(floating)}
    with torch.no_grad():
        out = result.model(batch.half())
        exact = tiny_cnn(batch)
    assert out.dtype == torch.float16 and out.shape == exact.shape
    assert _relative_error(out.float(), exact) < 0.01


# --------------------------------------------------------------------------------------------- qat


def test_prepare_qat_inserts_fake_quantization(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    prepared = prepare_qat(tiny_cnn, batch)
    fake = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    assert len(fake) >= 4  # input, two fused convs, the classifier
    assert prepared.training
    qat_kinds = {type(m).__module__ for m in prepared.modules()}
    assert any(kind.startswith("torch.ao.nn.intrinsic.qat") for kind in qat_kinds)  # fused conv-bn


def test_qat_trains_with_the_shared_loop_and_converts_to_int8(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    epochs: list[tuple[int, dict[str, float]]] = []
    result = compress(
        tiny_cnn, "qat", {"epochs": 2, "lr": 0.01}, data=loader, progress=False,
        on_epoch_end=lambda epoch, metrics: epochs.append((epoch, metrics)),
    )
    check()
    assert [epoch for epoch, _ in epochs] == [0, 1]
    assert result.info["qat_epochs"] == 2
    assert result.info["qat_loss"] == epochs[-1][1]["loss"]
    assert sum(isinstance(m, nniq.ConvReLU2d) for m in result.model.modules()) == 2
    assert not [m for m in result.model.modules() if isinstance(m, FakeQuantizeBase)]
    with torch.no_grad():
        assert result.model(batch).shape == tiny_cnn(batch).shape


def test_qat_on_an_untraceable_model_explains(loader: DataLoader) -> None:
    with pytest.raises(CompressionError, match="cannot be traced by torch.fx"):
        compress(Branchy(), "qat", data=loader, progress=False)
