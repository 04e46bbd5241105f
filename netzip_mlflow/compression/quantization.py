"""Quantization techniques: static int8 (``ptq``), dynamic int8 (``ptq_dynamic``), half precision
(``fp16``) and quantization-aware training (``qat``).

The int8 techniques use ``torch.ao.quantization`` (deprecated in torch 2.x but still the complete
int8 CPU path; its warnings are silenced) and set ``torch.backends.quantized.engine`` to the chosen
backend, process-wide, because packed int8 weights must run on the engine that packed them. Int8
models run on CPU only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import (
    get_default_qat_qconfig_mapping,
    get_default_qconfig_mapping,
    quantize_dynamic,
)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx
from torch.fx import GraphModule

from netzip_mlflow.compression.common import (
    calibrate,
    names_summary,
    quiet_torch_ao,
    reference_shape,
    run_checked,
    set_quantized_engine,
    train_for_technique,
)
from netzip_mlflow.compression.eager import WRAPPED_PREFIX, quantize_eager
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    BACKEND,
    LR,
    OPTIMIZER,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.errors import CompressionError, NetzipError

#: Layer types that dynamic quantization converts to int8.
DYNAMIC_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU)

_QUANTIZED_NAMESPACES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
_STUB_TYPES = ("Quantize", "DeQuantize")


def quantized_layer_names(model: nn.Module) -> list[str]:
    """Names of the int8 layers in ``model`` (static or dynamic).

    Quant/dequant stubs and the packed-weight holders inside a quantized layer are not counted.
    """
    names: list[str] = []
    for name, module in model.named_modules():
        kind = type(module)
        quantized = kind.__module__.startswith(_QUANTIZED_NAMESPACES)
        inside = any(name.startswith(f"{outer}.") for outer in names)
        if quantized and kind.__name__ not in _STUB_TYPES and not inside:
            names.append(name)
    return names


def _quantized_functional_ops(model: nn.Module) -> int:
    """Calls to ``torch.ops.quantized.*`` in an FX graph (functional conv/linear, after convert)."""
    if not isinstance(model, GraphModule):
        return 0
    return sum(
        1
        for node in model.graph.nodes
        if node.op == "call_function" and str(node.target).startswith("quantized.")
    )


def count_quantized(model: nn.Module) -> int:
    """Int8 layers of ``model``: quantized modules plus quantized functional ops in an FX graph."""
    return len(quantized_layer_names(model)) + _quantized_functional_ops(model)


# --------------------------------------------------------------------------------------------- ptq


def _ptq_fx(
    model: nn.Module, example_inputs: torch.Tensor, data: Iterable, batches: int, backend: str
) -> tuple[nn.Module, int]:
    prepared = prepare_fx(
        model, get_default_qconfig_mapping(backend), example_inputs=(example_inputs,)
    )
    used = calibrate(prepared, data, batches)
    return convert_fx(prepared), used


def _ptq(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Static int8: per-channel weights, activations calibrated on real batches; FX, else eager."""
    backend, batches = str(params["backend"]), int(params["calibration_batches"])
    set_quantized_engine(backend)
    model = model.cpu().eval()
    expected = reference_shape(model, example_inputs)
    info: dict[str, ParamValue] = {"backend": backend, "dtype": "int8"}
    pristine = copy.deepcopy(model)  # prepare_fx may fuse modules of `model` before failing
    with quiet_torch_ao():
        try:
            quantized, used = _ptq_fx(model, example_inputs, data, batches, backend)
            info["quantization_mode"], prefix = "fx", ""
        except NetzipError:
            raise
        except Exception as exc:  # FX tracing fails on data-dependent control flow and more
            quantized, used, fused = quantize_eager(
                pristine, example_inputs, data, batches, backend
            )
            info.update(quantization_mode="eager", fused_groups=fused,
                        fx_fallback_reason=f"{type(exc).__name__}: {exc}"[:500])
            prefix = WRAPPED_PREFIX
        what = "ptq" if not prefix else "ptq (eager mode: FX tracing failed)"
        run_checked(quantized, example_inputs, expected, what, strip_prefix=prefix)
    info["calibration_batches"] = used
    info["quantized_layers"] = _count_required(quantized, "ptq")
    return CompressionResult(quantized, info)


def _count_required(model: nn.Module, technique: str) -> int:
    """The number of int8 layers; raises when there is none."""
    count = count_quantized(model)
    if count == 0:
        raise CompressionError(
            f"{technique}: no layer of the model could be quantized to int8 (it has no supported "
            "Conv/Linear layer); use fp16 or a pruning technique instead"
        )
    return count


PTQ = TechniqueSpec(
    name="ptq",
    description="static post-training int8 quantization (per-channel weights, calibrated ranges)",
    params=(
        ParamSpec("calibration_batches", int, 10, "batches of data used to calibrate activations",
                  low=1),
        BACKEND,
    ),
    needs_data=True,
    needs_example_inputs=True,
    data_usage="calibration batches (real data, not noise)",
    apply=_ptq,
    final=True,
)


# ------------------------------------------------------------------------------------- ptq_dynamic


def _ptq_dynamic(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Dynamic int8: Linear/LSTM/GRU weights stored in int8, activations quantized on the fly."""
    candidates = [n for n, m in model.named_modules() if type(m) in DYNAMIC_LAYER_TYPES]
    if not candidates:
        kinds = ", ".join(t.__name__ for t in DYNAMIC_LAYER_TYPES)
        raise CompressionError(
            f"ptq_dynamic: the model has no {kinds} layer, so dynamic quantization changes "
            "nothing; use ptq (static int8, also quantizes convolutions) instead"
        )
    backend = str(params["backend"])
    set_quantized_engine(backend)
    model = model.cpu().eval()
    expected = None if example_inputs is None else reference_shape(model, example_inputs)
    with quiet_torch_ao():
        quantized = quantize_dynamic(
            model, set(DYNAMIC_LAYER_TYPES), dtype=torch.qint8, inplace=True
        )
        if example_inputs is not None:
            run_checked(quantized, example_inputs, expected, "ptq_dynamic")
    changed = quantized_layer_names(quantized)
    info: dict[str, ParamValue] = {
        "backend": backend,
        "dtype": "int8",
        "quantized_layers": len(changed),
        "quantized_layer_names": names_summary(changed),
    }
    return CompressionResult(quantized, info)


PTQ_DYNAMIC = TechniqueSpec(
    name="ptq_dynamic",
    description="dynamic int8 quantization of Linear/LSTM/GRU weights (activations at run time)",
    params=(BACKEND,),
    needs_data=False,
    needs_example_inputs=False,
    data_usage="not used (a batch, if given, checks the result runs)",
    apply=_ptq_dynamic,
    final=True,
)


# -------------------------------------------------------------------------------------------- fp16


def _fp16(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Half precision: every floating-point parameter and buffer cast to float16 (``model.half()``).

    The model then expects float16 inputs: the evaluator casts inputs to the model's dtype. On CPU,
    float16 kernels are often slower than float32 (fewer optimized kernels); the gain is size (2x)
    and GPU speed.
    """
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    if not tensors:
        raise CompressionError("fp16: the model has no floating-point weights to convert")
    expected = None if example_inputs is None else reference_shape(model, example_inputs)
    half = model.half()
    if example_inputs is not None:
        run_checked(half, example_inputs.to(torch.float16), expected, "fp16")
    return CompressionResult(half, {"dtype": "float16", "converted_tensors": len(tensors)})


FP16 = TechniqueSpec(
    name="fp16",
    description="half-precision (float16) weights; smaller, faster on GPU, often slower on CPU",
    params=(),
    needs_data=False,
    needs_example_inputs=False,
    data_usage="not used (a batch, if given, checks the result runs)",
    apply=_fp16,
    final=True,
)


# --------------------------------------------------------------------------------------------- qat


def prepare_qat(
    model: nn.Module, example_inputs: torch.Tensor, backend: str = "x86"
) -> GraphModule:
    """Insert fake-quantization (FX ``prepare_qat_fx``) for quantization-aware training.

    Conv-BN(-ReLU) sequences become fused QAT modules and every quantized tensor passes through a
    ``FakeQuantize`` module, so training sees int8 rounding. The returned module may share
    submodules with ``model``: pass a copy to keep the original.

    Args:
        model: the float model (CPU).
        example_inputs: a batch used to trace the model.
        backend: ``"x86"``, ``"fbgemm"`` or ``"qnnpack"``; also set as the quantized engine.

    Raises:
        CompressionError: the model cannot be traced by FX (QAT has no eager fallback).
    """
    set_quantized_engine(backend)
    model = model.cpu().train()
    with quiet_torch_ao():
        try:
            return prepare_qat_fx(
                model, get_default_qat_qconfig_mapping(backend), example_inputs=(example_inputs,)
            )
        except Exception as exc:  # tracing failures come in many types
            raise CompressionError(
                f"qat: the model cannot be traced by torch.fx ({type(exc).__name__}: {exc}); "
                "make its forward free of data-dependent control flow, or use ptq, which falls "
                "back to eager mode"
            ) from exc


def _qat(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Quantization-aware training: fake-quant training with the shared loop, then int8 convert."""
    backend = str(params["backend"])
    expected = reference_shape(model.cpu(), example_inputs)
    prepared = prepare_qat(model, example_inputs, backend)
    info: dict[str, ParamValue] = {"backend": backend, "dtype": "int8", "quantization_mode": "fx"}
    with quiet_torch_ao():
        info.update(
            train_for_technique(prepared, data, params, int(params["epochs"]), hooks, "qat", "qat")
        )
        quantized = convert_fx(prepared.eval())
        run_checked(quantized, example_inputs, expected, "qat")
    info["quantized_layers"] = _count_required(quantized, "qat")
    return CompressionResult(quantized, info)


QAT = TechniqueSpec(
    name="qat",
    description="quantization-aware training (fake-quant int8, fused conv-bn), then int8 convert",
    params=(
        epochs_param("epochs", 1, "training epochs with fake quantization", low=1),
        LR,
        OPTIMIZER,
        BACKEND,
    ),
    needs_data=True,
    needs_example_inputs=True,
    data_usage="training batches (inputs, class-index targets)",
    apply=_qat,
    final=True,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (PTQ, PTQ_DYNAMIC, FP16, QAT)
