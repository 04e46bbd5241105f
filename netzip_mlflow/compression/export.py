"""The ``onnx`` and ``openvino`` techniques: the model exported to a deployment runtime.

Both export the float model with ``torch.onnx`` (:mod:`netzip_mlflow.runtimes.onnx_export`);
``quantize: int8`` quantizes that graph statically to int8 QDQ (per-channel weights, activations
calibrated on ``calibration_batches`` batches of the study's training data). ``onnx`` runs the
graph in ONNX Runtime; ``openvino`` converts it to an OpenVINO IR. The result is a
:class:`~netzip_mlflow.runtimes.base.RuntimeModel`, so the technique must be a pipeline's last step
(e.g. prune_structured -> finetune -> onnx).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow.compression.common import require_data
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import ParamSpec, ParamValue, TechniqueSpec, TrainingHooks
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.evaluation.size import param_counts
from netzip_mlflow.runtimes.base import Runtime, RuntimeModel, SourceFacts
from netzip_mlflow.runtimes.onnx_export import ONNX_FILE, OPSET, export_onnx, quantize_qdq, require


def _source_facts(model: nn.Module, example: torch.Tensor) -> SourceFacts:
    params, nonzero = param_counts(model)
    return SourceFacts(count_ops(model, example[:1]), params, nonzero, tuple(example.shape[1:]))


def _exported(
    model: nn.Module, params: dict[str, ParamValue], data: Iterable | None, example: torch.Tensor,
    folder: Path, technique: str,
) -> tuple[Path, dict[str, ParamValue]]:
    """The ONNX file (float, or int8 QDQ with ``quantize: int8``) and the facts to log."""
    plain = export_onnx(model, example, folder / "float.onnx", int(params["opset"]))
    info: dict[str, ParamValue] = {"opset": int(params["opset"]), "dtype": "float32"}
    if params["quantize"] != "int8":
        return plain, info
    require_data(data, technique, "(calibration batches of real data for quantize: int8)")
    quantized = folder / "int8.onnx"
    info["calibration_batches"] = quantize_qdq(plain, quantized, data, int(params["calibration_batches"]))
    info.update(dtype="int8", quantization="static QDQ, per-channel int8 weights, uint8 activations")
    return quantized, info


def _runtime_result(
    runtime: Runtime, folder: Path, source: SourceFacts, info: dict[str, ParamValue]
) -> CompressionResult:
    model = RuntimeModel(runtime, folder, source)
    info.update(runtime=runtime.name, runtime_version=runtime.version(), files=len(model.files()))
    return CompressionResult(model.eval(), dict(info))


def _export(
    runtime: Runtime, write: Callable[[Path, Path], None], model: nn.Module,
    params: dict[str, ParamValue], data: Iterable | None, example_inputs: torch.Tensor, technique: str,
) -> CompressionResult:
    """Export ``model`` to ONNX (float32 or int8 QDQ), let ``write(onnx_path, folder)`` put the
    runtime's files into ``folder`` and wrap them in a :class:`RuntimeModel`."""
    model = model.cpu().eval()
    source = _source_facts(model, example_inputs)
    with tempfile.TemporaryDirectory(prefix=f"netzip-{technique}-") as tmp:
        onnx_path, info = _exported(model, params, data, example_inputs, Path(tmp), technique)
        ship = Path(tmp) / "ship"
        ship.mkdir()
        write(onnx_path, ship)
        return _runtime_result(runtime, ship, source, info)


def _onnx(
    model: nn.Module, params: dict[str, ParamValue], data: Iterable | None,
    example_inputs: torch.Tensor | None, hooks: TrainingHooks,
) -> CompressionResult:
    """Export to ONNX (float32 or int8 QDQ) and run it in ONNX Runtime."""
    from netzip_mlflow.runtimes.onnxruntime_rt import OnnxRuntime

    require("onnxruntime", "onnx")
    return _export(OnnxRuntime(), lambda path, ship: path.rename(ship / ONNX_FILE), model, params, data,
                   example_inputs, "onnx")


def _openvino(
    model: nn.Module, params: dict[str, ParamValue], data: Iterable | None,
    example_inputs: torch.Tensor | None, hooks: TrainingHooks,
) -> CompressionResult:
    """Export to ONNX (float32 or int8 QDQ) and convert it to an OpenVINO IR."""
    from netzip_mlflow.runtimes.openvino_rt import OpenVinoRuntime, convert_to_ir

    require("openvino", "openvino")
    if params["quantize"] == "int8":
        require("onnxruntime", "openvino")  # its quantizer writes the QDQ graph OpenVINO reads
    return _export(OpenVinoRuntime(), convert_to_ir, model, params, data, example_inputs, "openvino")


def _params() -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("quantize", str, "none", "none: float32 weights; int8: static QDQ quantization",
                  choices=("none", "int8")),
        ParamSpec("calibration_batches", int, 10,
                  "batches of training data that calibrate the int8 activation ranges", low=1),
        ParamSpec("opset", int, OPSET, "ONNX opset of the torch.onnx export", low=13, high=21),
    )


ONNX = TechniqueSpec(
    name="onnx",
    description="export to ONNX and run in ONNX Runtime (float32, or quantize: int8 static QDQ)",
    params=_params(),
    needs_data=False,
    needs_example_inputs=True,
    data_usage="calibration batches when quantize: int8",
    apply=_onnx,
    final=True,
)
OPENVINO = TechniqueSpec(
    name="openvino",
    description="export to an OpenVINO IR and run in OpenVINO (float32, or quantize: int8 from the "
    "QDQ ONNX graph)",
    params=_params(),
    needs_data=False,
    needs_example_inputs=True,
    data_usage="calibration batches when quantize: int8",
    apply=_openvino,
    final=True,
)
TECHNIQUES = (ONNX, OPENVINO)
