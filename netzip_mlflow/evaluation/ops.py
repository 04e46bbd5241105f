"""The ops counter: MACs, effective MACs and CHATS of one forward pass, per layer and in total.

One counter, one definition, for every model that runs: float, BN-fused, QAT (fake-quant), static
int8 (eager ``convert`` and FX ``convert_fx``), dynamic quantized Linear/LSTM/GRU, fp16, pruned
(zero-filled) weights, grouped/depthwise convolutions, and the matmuls of attention.

Definitions (contract, docs/architecture.md, "Metric contract"):

* **MACs** are multiply-accumulates as :class:`torch.utils.flop_counter.FlopCounterMode` defines
  them, halved (it counts a MAC as 2 FLOPs): the products of matmuls (``mm``, ``addmm``, ``bmm``,
  Linear), convolutions (``out`` elements × ``C_in/groups`` × kernel size; transposed ones per input
  element) and attention (``Q K^T`` and ``A V``). Bias additions, normalization, activations,
  pooling and other element-wise ops are not MACs. Quantized ops (``quantized::conv2d``, ``linear``,
  ``linear_dynamic``, ``matmul`` ...) get the formula of their float counterpart, so a quantized
  model has exactly the MACs of its float original. Fused kernels that hide their matmuls from the
  dispatcher are counted through their math: the attention fast path of ``nn.MultiheadAttention`` /
  ``nn.TransformerEncoderLayer`` is switched off while counting, CPU
  ``scaled_dot_product_attention`` gets the attention formula, and recurrent modules (float and
  dynamic quantized RNN/LSTM/GRU and their cells) are counted in closed form: per token, layer and
  direction ``gates × hidden × (input + hidden)`` (+ ``hidden × proj`` for a projected LSTM).
  Sparse-layout weights (COO/CSR through ``torch.sparse.mm`` or ``F.linear``) count the dense
  MACs of their shape; their density goes into the effective MACs, as for pruned dense weights.
* Every MAC belongs to the innermost module running when it happens (a *layer*; e.g. all MACs of
  ``nn.MultiheadAttention``, whose ``out_proj`` is used as a weight and never called). A layer's
  **bits** are those of the weights it owns (int8 quantized → 8, fp16 → 16, fp32 → 32); a layer that
  owns no weights (a matmul of activations) takes the bit-width of the first operand of its ops
  (quantized activations → 8). QAT modules compute in fp32 and count 32 bits until they are
  converted.
* **CHATS** = Σ over layers of MACs × bits (paper Table 3: ResNet18 1.81e9 MACs × 32 = 57.92e9).
* **Effective MACs** (ShrinkBench's convention) = Σ over layers of MACs × weight density, where the
  density is the share of the layer's weight elements (biases excluded) that are non-zero, quantized
  weights counted on their integer representation; **effective CHATS** = Σ effective MACs × bits.

Counts are for one forward pass of the example inputs given: the evaluator passes one sample (batch
1), so its figures are per sample.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNCellBase as DynamicRNNCellBase
from torch.nn.utils.rnn import PackedSequence
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, flop_registry

from netzip_mlflow.errors import DataError, ModelError
from netzip_mlflow.evaluation.weights import (
    ROOT_NAME,
    LayerTensors,
    dtype_bits,
    iter_layer_tensors,
    named_modules,
)
from netzip_mlflow.tracking import keys

FLOPS_PER_MAC = 2

_QUANTIZED_CONV_OPS = (
    "conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv2d_add", "conv2d_add_relu",
    "conv1d_dynamic", "conv2d_dynamic", "conv3d_dynamic",
    "conv_transpose1d_dynamic", "conv_transpose2d_dynamic", "conv_transpose3d_dynamic",
)  # fmt: skip
_QUANTIZED_MATMUL_OPS = (
    "linear", "linear_relu", "linear_leaky_relu", "linear_tanh", "linear_dynamic",
    "linear_relu_dynamic", "linear_dynamic_fp16", "linear_relu_dynamic_fp16", "matmul",
)  # fmt: skip
_ATTENTION_OPS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_fused_attention_overrideable",
)
_SPARSE_MATMUL_OPS = ("_sparse_addmm", "_sparse_mm")
_RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_CELL_GATES: tuple[tuple[tuple[type[nn.Module], ...], int], ...] = (
    ((nn.LSTMCell, nnqd.LSTMCell), 4),
    ((nn.GRUCell, nnqd.GRUCell), 3),
    ((nn.RNNCell, nnqd.RNNCell), 1),
)


@dataclass(frozen=True)
class LayerOps:
    """Ops of one layer for one forward pass.

    Attributes:
        name: module name in ``model.named_modules()`` (``"(model)"`` for the model itself).
        type: module class as its ``repr`` shows it (e.g. ``QuantizedConvReLU2d``).
        macs: multiply-accumulates.
        macs_effective: ``macs`` × the layer's weight density.
        bits: bit-width of the layer's weights (or of its operands when it owns no weights).
        params: weight and bias elements the layer owns.
        params_nonzero: those that are not exactly zero.
        sparsity: ``1 - params_nonzero / params`` (0.0 without parameters).
    """

    name: str
    type: str
    macs: int
    macs_effective: float
    bits: int
    params: int
    params_nonzero: int
    sparsity: float


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LayerOps))


@dataclass(frozen=True)
class OpsReport:
    """Totals and per-layer ops of one forward pass (per sample when the inputs are one sample).

    Attributes:
        macs: multiply-accumulates.
        macs_effective: Σ layer MACs × weight density.
        chats: Σ layer MACs × bits (MAC-bits).
        chats_effective: Σ layer effective MACs × bits.
        per_layer: every layer that does MACs or owns parameters, in ``named_modules`` order.
    """

    macs: int
    macs_effective: float
    chats: int
    chats_effective: float
    per_layer: list[LayerOps]

    @classmethod
    def from_layers(cls, per_layer: list[LayerOps]) -> OpsReport:
        """The totals of ``per_layer``: Σ MACs, Σ effective MACs, Σ MACs × bits, Σ effective × bits."""
        return cls(
            macs=sum(layer.macs for layer in per_layer),
            macs_effective=sum(layer.macs_effective for layer in per_layer),
            chats=sum(layer.macs * layer.bits for layer in per_layer),
            chats_effective=sum(layer.macs_effective * layer.bits for layer in per_layer),
            per_layer=per_layer,
        )

    def as_metrics(self) -> dict[str, float]:
        """``speed/macs``, ``speed/macs_effective``, ``speed/chats``, ``speed/chats_effective``."""
        return {
            keys.MACS: float(self.macs),
            keys.MACS_EFFECTIVE: self.macs_effective,
            keys.CHATS: float(self.chats),
            keys.CHATS_EFFECTIVE: self.chats_effective,
        }

    def to_dataframe(self) -> pd.DataFrame:
        """One row per layer with the columns of :data:`COLUMNS`."""
        return pd.DataFrame([asdict(layer) for layer in self.per_layer], columns=list(COLUMNS))

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dataframe` to ``path`` as CSV (no index column) and return the path."""
        path = Path(path)
        self.to_dataframe().to_csv(path, index=False)
        return path


def count_ops(
    model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]
) -> OpsReport:
    """Count MACs, effective MACs and CHATS of ``model(*example_inputs)``, per layer and in total.

    Counts are for one forward pass of ``example_inputs`` (a tensor or a tuple of tensors): pass one
    sample (batch 1) for per-sample figures. Floating-point inputs are cast to the dtype and device
    of the model's first floating-point parameter (so an fp16 model runs on fp32 inputs). The model
    runs once in eval mode under ``torch.no_grad()``; its modes are restored afterwards and nothing
    else about it changes. (Not ``torch.inference_mode()``: FlopCounterMode's module tracker hooks
    autograd on module inputs that require grad, which fails under inference mode when a module
    receives a parameter, as QAT fake-quantizers do.) Raises :class:`ModelError` if the model fails
    to run.
    """
    inputs = _prepare_inputs(model, example_inputs)
    counter = _LayerCounter()
    _run_counted(model, inputs, counter)
    layers = {layer.name: layer for layer in iter_layer_tensors(model)}
    per_layer = [
        _layer_ops(name, module, counter, layers.get(name))
        for name, module in named_modules(model)
        if name in layers or counter.flops.get(name)
    ]
    return OpsReport.from_layers(per_layer)


def recurrent_macs(module: nn.Module, inputs: torch.Tensor | PackedSequence) -> int:
    """Closed-form MACs of a float or dynamic quantized RNN/LSTM/GRU (or cell) on ``inputs``.

    Per token (every element of the input except the feature dimension), layer and direction:
    ``gates × hidden × (layer input + recurrent hidden)``, plus ``hidden × proj`` for a projected
    LSTM.
    """
    data = inputs.data if isinstance(inputs, PackedSequence) else inputs
    tokens = data.numel() // data.shape[-1]
    hidden = module.hidden_size
    for cell_types, gates in _CELL_GATES:
        if isinstance(module, cell_types):
            return tokens * gates * hidden * (module.input_size + hidden)
    gates = _RECURRENT_GATES[module.mode]
    proj = getattr(module, "proj_size", 0)
    recurrent = proj or hidden
    directions = 2 if module.bidirectional else 1
    per_token = 0
    for layer in range(module.num_layers):
        layer_input = module.input_size if layer == 0 else recurrent * directions
        per_token += directions * (gates * hidden * (layer_input + recurrent) + hidden * proj)
    return tokens * per_token


class _LayerCounter:
    """Attributes every counted op to the innermost module that runs it."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, nn.Module]] = []
        self.flops: dict[str, int] = defaultdict(int)
        self.operand_bits: dict[str, int] = defaultdict(int)

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[None]:
        """Track which module runs while inside the context (hooks removed on exit)."""
        handles = []
        for name, module in named_modules(model):
            handles.append(module.register_forward_pre_hook(partial(self._enter, name)))
            handles.append(module.register_forward_hook(self._exit, with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def record_op(self, flops: int, operand_bits: int | None) -> None:
        """Add one op's FLOPs to the running module (recurrent modules are counted on exit)."""
        name, module = self._stack[-1] if self._stack else (ROOT_NAME, None)
        if not _is_recurrent(module):
            self._add(name, flops, operand_bits)

    def _add(self, name: str, flops: int, operand_bits: int | None) -> None:
        self.flops[name] += flops
        if operand_bits is not None:
            self.operand_bits[name] = max(self.operand_bits[name], operand_bits)

    def _enter(self, name: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._stack.append((name, module))

    def _exit(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        name, _ = self._stack.pop()
        if _is_recurrent(module):
            inputs = args[0] if args else kwargs["input"]
            self._add(name, FLOPS_PER_MAC * recurrent_macs(module, inputs), None)


def _is_recurrent(module: nn.Module | None) -> bool:
    return isinstance(module, (nn.RNNBase, nn.RNNCellBase, DynamicRNNBase, DynamicRNNCellBase))


def _prepare_inputs(
    model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    sequence = isinstance(inputs, (tuple, list))
    if not sequence or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise DataError(
            "example_inputs must be a tensor or a tuple of tensors, got "
            f"{type(example_inputs).__name__}; pass one batch of model inputs, e.g. the first "
            "element of a DataLoader batch"
        )
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    if reference is None:
        return tuple(inputs)
    return tuple(
        t.to(device=reference.device, dtype=reference.dtype if t.is_floating_point() else t.dtype)
        for t in inputs
    )


def _run_counted(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], counter: _LayerCounter
) -> None:
    formulas = {
        packet: _observed(formula, counter.record_op) for packet, formula in _formulas().items()
    }
    with (
        _counting_state(model),
        counter.attached(model),
        torch.no_grad(),
        FlopCounterMode(display=False, custom_mapping=formulas),
    ):
        try:
            model(*inputs)
        except Exception as error:
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
            raise ModelError(
                f"the model failed to run on example inputs of shape {shapes} "
                f"({type(error).__name__}: {error}); pass example inputs the model accepts, "
                "e.g. one batch of the evaluation data"
            ) from error


@contextmanager
def _counting_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and the math path of attention while inside; every module's mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for module, training in modes:
            module.training = training


def _formulas() -> dict[Any, Callable[..., int]]:
    """FlopCounterMode's formulas plus those of quantized ops and CPU attention (raw arguments)."""
    extra: dict[Any, Callable[..., int]] = {}
    for namespace, names, formula in (
        (torch.ops.quantized, _QUANTIZED_CONV_OPS, _quantized_conv_flops),
        (torch.ops.quantized, _QUANTIZED_MATMUL_OPS, _matmul_flops),
        (torch.ops.aten, _ATTENTION_OPS, _attention_flops),
        (torch.ops.aten, _SPARSE_MATMUL_OPS, _sparse_matmul_flops),
    ):
        extra.update(dict.fromkeys(_packets(namespace, names), formula))
    return {**flop_registry, **extra}


def _packets(namespace: Any, names: Iterable[str]) -> list[Any]:
    """The op packets of ``namespace`` among ``names`` that this torch build has."""
    return [getattr(namespace, name) for name in names if hasattr(namespace, name)]


def _observed(
    formula: Callable[..., int], on_op: Callable[[int, int | None], None]
) -> Callable[..., int]:
    """Wrap a raw-argument FLOP formula so that each counted op is also reported to ``on_op``."""

    def observed(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        flops = int(formula(*args, out_val=out_val, **kwargs))
        operand = _first(args, torch.Tensor)
        on_op(flops, dtype_bits(operand.dtype) if operand is not None else None)
        return flops

    observed._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode passes raw arguments
    return observed


def _first(args: Any, kind: type) -> Any:
    return next((leaf for leaf in pytree.tree_leaves(args) if isinstance(leaf, kind)), None)


def _quantized_conv_flops(*args: Any, out_val: torch.Tensor, **kwargs: Any) -> int:
    """Quantized convolution: the float formula on the unpacked weight's shape."""
    packed = _first(args, torch.ScriptObject)
    weight, _ = packed.unpack()
    return conv_flop_count(
        list(_first(args, torch.Tensor).shape),
        list(weight.shape),
        list(out_val.shape),
        transposed=packed.transpose(),
    )


def _matmul_flops(*args: Any, out_val: torch.Tensor, **kwargs: Any) -> int:
    """Linear or matmul ``(..., M, K) x (K, N)``: 2 FLOPs per output element per inner index."""
    return FLOPS_PER_MAC * out_val.numel() * _first(args, torch.Tensor).shape[-1]


def _sparse_matmul_flops(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """``torch.sparse.mm`` / ``addmm`` of a sparse ``(M, K)`` and a dense ``(K, N)`` matrix: the
    dense count, ``M x K x N`` MACs, as for a pruned dense weight (its density goes into the
    effective MACs)."""
    mat1, mat2 = [a for a in args if isinstance(a, torch.Tensor)][-2:]
    return FLOPS_PER_MAC * mat1.shape[0] * mat1.shape[1] * mat2.shape[-1]


def _attention_flops(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any
) -> int:
    """``softmax(Q K^T) V`` for Q ``(..., L, E)``, K ``(..., S, E)``, V ``(..., S, Ev)``."""
    rows = query.numel() // query.shape[-1]
    return FLOPS_PER_MAC * rows * key.shape[-2] * (query.shape[-1] + value.shape[-1])


def _layer_ops(
    name: str, module: nn.Module, counter: _LayerCounter, tensors: LayerTensors | None
) -> LayerOps:
    macs = counter.flops.get(name, 0) // FLOPS_PER_MAC
    density = tensors.weight_density if tensors else 1.0
    params = tensors.params if tensors else 0
    nonzero = tensors.params_nonzero if tensors else 0
    return LayerOps(
        name=name,
        type=module._get_name(),
        macs=macs,
        macs_effective=macs * density,
        bits=tensors.bits if tensors else counter.operand_bits[name],
        params=params,
        params_nonzero=nonzero,
        sparsity=1.0 - nonzero / params if params else 0.0,
    )
