"""Export a torch classifier to ONNX and quantize the ONNX graph to int8 (static QDQ).

* :func:`export_onnx` uses ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``:
  it needs only the ``onnx`` package, not ``onnxscript``), opset :data:`OPSET`, input ``input`` and
  output ``output`` with a dynamic batch dimension, weights in one file. A model that does not export
  raises :class:`~netzip_mlflow.errors.CompressionError` naming the operator that failed.
* :func:`quantize_qdq` runs ONNX Runtime's static quantization in the QDQ format (QuantizeLinear /
  DequantizeLinear pairs around every Conv, Gemm and MatMul), int8 per-channel weights and uint8
  activations (ONNX Runtime's recommended U8S8 on x86), ranges calibrated (MinMax) on real batches.
  The same QDQ graph is what OpenVINO reads for its int8 model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netzip_mlflow.errors import CompressionError, ConfigError, DataError
from netzip_mlflow.models.training import iter_batches

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_FILE = "model.onnx"
_OPERATOR_PATTERNS = (
    re.compile(r"operator '([^']+)'"),
    re.compile(r"Python operator (\w+)"),
    re.compile(r"(aten::\w+|prim::\w+|quantized::\w+)"),
)


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise a ConfigError naming the extra that installs it."""
    try:
        __import__(module)
    except ImportError as error:
        raise ConfigError(
            "technique", f"needs the Python package {module!r}, which is not installed ({error})",
            f"pip install 'netzip-mlflow[{extra}]'",
        ) from None


def failed_operator(error: BaseException) -> str:
    """The operator a ``torch.onnx`` error names (``aten::fft_fft2``), else the error's type."""
    text = str(error)
    for pattern in _OPERATOR_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return type(error).__name__


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int = OPSET) -> Path:
    """Write ``model`` (float, CPU, eval) as ONNX to ``path``; returns ``path``.

    Raises:
        CompressionError: ``torch.onnx`` cannot export the model; the message names the operator.
    """
    require("onnx", "onnx")
    model = model.cpu().eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example[:1].cpu().float(),), str(path), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as error:  # torch.onnx raises many types (SymbolicValueError, RuntimeError...)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CompressionError(
            f"torch.onnx cannot export operator {failed_operator(error)} of this model ({first}); "
            "replace that operation or evaluate the model in torch"
        ) from error
    return path


def quantize_qdq(source: Path, target: Path, data: Iterable, batches: int) -> int:
    """Static int8 QDQ quantization of the ONNX model ``source`` into ``target``.

    Calibrated on up to ``batches`` batches of ``data`` (real inputs). Returns the batches used.

    Raises:
        DataError: ``data`` yields no batch.
    """
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = [np.ascontiguousarray(x.detach().cpu().float().numpy()) for x, _ in iter_batches(data, limit=batches)]
    if not inputs:
        raise DataError("the calibration data yields no batch; pass a non-empty DataLoader")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = target.with_name("prepared.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # shape inference and graph fusions that quantization expects (ORT's documented step)
            quant_pre_process(str(source), str(prepared))
        except Exception:  # noqa: BLE001 - optional step; quantize the plain export instead
            prepared = source
        quantize_static(
            str(prepared), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    if prepared != source:
        prepared.unlink(missing_ok=True)
    return len(inputs)
