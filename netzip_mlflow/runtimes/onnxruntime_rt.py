"""ONNX Runtime: a ``model.onnx`` (with any external-data files beside it) run on the CPU
execution provider, threads fixed by ``SessionOptions.intra_op_num_threads`` (inter-op 1,
sequential execution, all graph optimizations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netzip_mlflow.runtimes.base import FLOAT_BITS, Runtime
from netzip_mlflow.runtimes.onnx_export import INPUT_NAME, ONNX_FILE, require

#: weighted ONNX ops -> index of their weight input.
_WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "QLinearConv": 3,
             "QLinearMatMul": 3, "ConvInteger": 1, "MatMulInteger": 1}
_INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def onnx_dtype_bits(data_type: int) -> int:
    """Bits of an ONNX ``TensorProto`` element type (float 32, float16 16, int8 8, int4 4...)."""
    import onnx

    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize * 8)
    except Exception:  # noqa: BLE001 - 4-bit and other packed types
        name = onnx.TensorProto.DataType.Name(data_type)
        return 4 if "4" in name else FLOAT_BITS


class _OrtSession:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {INPUT_NAME: inputs})[0]

    def threads(self) -> int:
        return int(self._session.get_session_options().intra_op_num_threads)


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU (tag ``netzip.runtime=onnxruntime``)."""

    name = "onnxruntime"
    distribution = "onnxruntime"
    module = "onnxruntime"
    thread_option = "SessionOptions.intra_op_num_threads"

    def files(self, folder: Path) -> list[Path]:
        """``model.onnx`` and the external-data files its initializers name."""
        require("onnx", "onnx")
        import onnx

        model = Path(folder) / ONNX_FILE
        graph = onnx.load(str(model), load_external_data=False).graph
        external = {
            entry.value
            for init in graph.initializer
            if init.data_location == onnx.TensorProto.EXTERNAL
            for entry in init.external_data
            if entry.key == "location"
        }
        return [model, *(Path(folder) / name for name in sorted(external))]

    def load(self, folder: Path, threads: int) -> _OrtSession:
        require("onnxruntime", "onnx")
        return _OrtSession(Path(folder) / ONNX_FILE, threads)

    def layer_bits(self, folder: Path) -> dict[str, int]:
        """Bits of each weighted node's weight: that of the integer tensor a DequantizeLinear turns
        into the weight (8 for int8 QDQ), of an integer op's weight, else of the weight itself."""
        require("onnx", "onnx")
        import onnx

        graph = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False).graph
        types = {init.name: init.data_type for init in graph.initializer}
        producers = {out: node for node in graph.node for out in node.output}
        bits: dict[str, int] = {}
        for node in graph.node:
            index = _WEIGHTED.get(node.op_type)
            if index is None or len(node.input) <= index:
                continue
            weight = node.input[index]
            producer = producers.get(weight)
            if node.op_type in _INTEGER_OPS:
                bits[node.name] = onnx_dtype_bits(types.get(weight, onnx.TensorProto.INT8))
            elif producer is not None and producer.op_type == "DequantizeLinear":
                bits[node.name] = onnx_dtype_bits(types.get(producer.input[0], onnx.TensorProto.INT8))
            elif weight in types:
                bits[node.name] = onnx_dtype_bits(types[weight])
        return bits
