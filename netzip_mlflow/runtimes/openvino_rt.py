"""OpenVINO: an IR (``model.xml`` + ``model.bin``) compiled for the CPU plugin, threads fixed by
``INFERENCE_NUM_THREADS`` (one stream, latency hint).

The IR is converted from the ONNX export (``openvino.convert_model``, weights kept in float32:
``compress_to_fp16=False``). The int8 IR is converted from the QDQ ONNX model: OpenVINO documents
reading QuantizeLinear/DequantizeLinear models and runs them through its low-precision
transformations as int8 kernels (NNCF is OpenVINO's other int8 path; the QDQ path needs no further
package and gives OpenVINO and ONNX Runtime the very same quantized weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netzip_mlflow.runtimes.base import FLOAT_BITS, Runtime
from netzip_mlflow.runtimes.onnx_export import require
from netzip_mlflow.runtimes.signal_stack import kept_signal_stack

XML_FILE, BIN_FILE = "model.xml", "model.bin"
_WEIGHTED = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
_PASS_THROUGH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze")


def _element_bits(element_type: object) -> int:
    return int(getattr(element_type, "bitwidth", FLOAT_BITS)) if hasattr(element_type, "bitwidth") else FLOAT_BITS


def weight_bits(node: object) -> int | None:
    """Bits of the weight feeding ``node``'s second input, following the decompression ops
    (Convert/Subtract/Multiply/Reshape...) up to the stored constant; a FakeQuantize of at most
    256 levels counts 8. ``None`` when the second input is not a constant (an activation)."""
    current = node.input_value(1).get_node()
    smallest: int | None = None
    for _ in range(16):
        kind = current.get_type_name()
        if kind == "Constant":
            bits = _element_bits(current.get_output_element_type(0))
            return bits if smallest is None else min(bits, smallest)
        if kind == "FakeQuantize":
            smallest = 8 if int(current.get_attributes().get("levels", 1 << 16)) <= 256 else smallest
        elif kind not in _PASS_THROUGH:
            return smallest
        current = current.input_value(0).get_node()
    return smallest


class _OvSession:
    """A compiled model and its infer request. Every call into the CPU plugin, its release
    included, keeps the thread's alternate signal stack (see :mod:`.signal_stack`)."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        with kept_signal_stack():
            core = ov.Core()
            self._compiled = core.compile_model(
                str(path), "CPU",
                {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"},
            )
            self._request = self._compiled.create_infer_request()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        with kept_signal_stack():
            return np.array(self._request.infer([inputs])[0], copy=True)

    def threads(self) -> int:
        with kept_signal_stack():
            return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    def __del__(self) -> None:
        with kept_signal_stack():
            self.__dict__.pop("_request", None)
            self.__dict__.pop("_compiled", None)


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU (tag ``netzip.runtime=openvino``)."""

    name = "openvino"
    distribution = "openvino"
    module = "openvino"
    thread_option = "INFERENCE_NUM_THREADS"

    def files(self, folder: Path) -> list[Path]:
        """``model.xml`` and ``model.bin``."""
        return [Path(folder) / XML_FILE, Path(folder) / BIN_FILE]

    def load(self, folder: Path, threads: int) -> _OvSession:
        require("openvino", "openvino")
        return _OvSession(Path(folder) / XML_FILE, threads)

    def layer_bits(self, folder: Path) -> dict[str, int]:
        """Friendly name of each Convolution/MatMul with a constant weight -> that weight's bits."""
        require("openvino", "openvino")
        import openvino as ov

        model = ov.Core().read_model(str(Path(folder) / XML_FILE))
        bits: dict[str, int] = {}
        for op in model.get_ops():
            if op.get_type_name() in _WEIGHTED:
                width = weight_bits(op)
                if width is not None:
                    bits[op.get_friendly_name()] = width
        return bits


def convert_to_ir(onnx_path: Path, folder: Path) -> None:
    """Convert the ONNX model at ``onnx_path`` to ``folder/model.xml`` + ``model.bin`` (float32
    weights stay float32, int8 QDQ weights stay int8)."""
    require("openvino", "openvino")
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(folder / XML_FILE), compress_to_fp16=False)
