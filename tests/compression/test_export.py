"""The onnx and openvino techniques: parameters, pipeline placement and the export error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netzip_mlflow.compression.registry import compress, validate_params
from netzip_mlflow.compression.pipeline import validate_steps
from netzip_mlflow.errors import CompressionError, ConfigError

pytest.importorskip("onnxruntime")


class _FFT(nn.Module):
    """A classifier whose aten::fft_fft2 the TorchScript ONNX exporter cannot export."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.fft.fft2(x).real.flatten(1))


def test_defaults_and_bad_values_name_the_field() -> None:
    assert validate_params("onnx", None) == {"quantize": "none", "calibration_batches": 10, "opset": 17}
    with pytest.raises(ConfigError, match=r"params.quantize.*none, int8"):
        validate_params("openvino", {"quantize": "int4"})
    with pytest.raises(ConfigError, match="params.opset"):
        validate_params("onnx", {"opset": 9})


def test_an_export_must_be_the_last_pipeline_step() -> None:
    steps = [{"technique": "prune_structured"}, {"technique": "finetune"}, {"technique": "onnx"}]
    assert [s["technique"] for s in validate_steps(steps)] == ["prune_structured", "finetune", "onnx"]
    with pytest.raises(ConfigError, match=r"steps\[1\].technique.*cannot follow 'openvino'"):
        validate_steps([{"technique": "openvino"}, {"technique": "finetune"}])


def test_a_model_that_does_not_export_names_the_operator(loader) -> None:
    with pytest.raises(CompressionError, match=r"cannot export operator aten::fft_fft2"):
        compress(_FFT(), "onnx", data=loader)


def test_int8_without_data_names_the_data_field(tiny_cnn, batch) -> None:
    with pytest.raises(ConfigError, match="calibration batches"):
        compress(tiny_cnn, "onnx", {"quantize": "int8"}, example_inputs=batch)


def test_info_records_runtime_version_and_calibration(tiny_cnn, loader) -> None:
    import onnxruntime

    result = compress(tiny_cnn, "onnx", {"quantize": "int8", "calibration_batches": 2}, data=loader)
    assert result.info["runtime"] == "onnxruntime"
    assert result.info["runtime_version"] == onnxruntime.__version__
    assert result.info["calibration_batches"] == 2 and result.info["dtype"] == "int8"
