"""One walk over a model's layers and the weight and bias tensors each layer owns.

This is the single definition behind ``size/params``, ``size/params_nonzero``, ``size/sparsity`` and
the per-layer columns (params, weight bit-width, weight density) of
:func:`netzip_mlflow.evaluation.ops.count_ops`.

Definition (contract). A *layer* is a module that owns weight or bias tensors itself, not through
its children. The tensors a layer owns are:

* quantized modules with packed weights (``torch.ao.nn.quantized``
  Conv/ConvTranspose/Linear/Embedding, the fused ``torch.ao.nn.intrinsic.quantized`` ones such as
  ConvReLU2d and LinearReLU, dynamic quantized Linear): the unpacked ``weight()`` and ``bias()``.
  Their packed-parameter holder modules (``LinearPackedParams`` ...) own no tensors of their own;
* dynamic quantized recurrent modules (LSTM, GRU and their cells): every tensor of ``get_weight()``
  and ``get_bias()``;
* fp16 dynamic quantized modules unpack their fp16 weights as fp32: they count as the fp16 they
  store;
* modules that store their weights in a format of their own (the bit-packed binary layers of
  ``bnn``) describe them: ``netzip_layer_tensors()`` returns the dense weight and bias tensors and
  the class attribute ``netzip_weight_bits`` gives the weights' bit-width (1 for binary weights);
* every other module: its direct ``nn.Parameter`` s (``recurse=False``). A tensor pruned with
  ``torch.nn.utils.prune`` (``X_orig`` parameter with an ``X_mask`` buffer) counts as the masked
  ``X_orig * X_mask``; a tensor under ``torch.nn.utils.parametrize`` counts as its computed value;
  a sparse-layout tensor counts all its elements, its non-zeros on its stored values.

A tensor whose name contains ``bias`` is a bias, every other one is a weight. Buffers are never
counted: BatchNorm running statistics, observer and fake-quantize state, quantization scales and
zero points and pruning masks are not parameters. With this definition a float model's parameter
count equals ``sum(p.numel() for p in model.parameters())`` (unless a parametrization changes a
tensor's size), and a quantized model has the same count as its float original after BatchNorm
folding (folding moves BatchNorm's scale and shift into the convolution's weight and bias).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNCellBase as DynamicRNNCellBase
from torch.nn.utils import parametrize

ROOT_NAME = "(model)"
"""Name given to the model itself when it owns tensors or does MACs in its own ``forward``."""

_DECLARED_BITS = "netzip_weight_bits"
_DECLARED_TENSORS = "netzip_layer_tensors"
_PRUNE_ORIG_SUFFIX = "_orig"
_PRUNE_MASK_SUFFIX = "_mask"
_SUB_BYTE_BITS = {torch.quint4x2: 4, torch.quint2x4: 2}
_AFFINE_SCHEMES = (
    torch.per_tensor_affine,
    torch.per_tensor_symmetric,
    torch.per_channel_affine,
    torch.per_channel_symmetric,
)


@dataclass(frozen=True)
class LayerTensors:
    """The weight and bias tensors one layer owns (see the module docstring for the definition)."""

    name: str
    module: nn.Module
    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Weights then biases."""
        return self.weights + self.biases

    @property
    def params(self) -> int:
        """Number of weight and bias elements."""
        return sum(t.numel() for t in self.tensors)

    @property
    def params_nonzero(self) -> int:
        """Number of weight and bias elements that are not exactly zero."""
        return sum(count_nonzero(t) for t in self.tensors)

    @property
    def bits(self) -> int:
        """Bit-width of the weights (the widest if they differ; of the biases if it has none);
        a module's own ``netzip_weight_bits`` when it declares one and has weights."""
        declared = getattr(self.module, _DECLARED_BITS, None)
        if declared is not None and self.weights:
            return int(declared)
        return max(dtype_bits(t.dtype) for t in (self.weights or self.biases))

    @property
    def weight_density(self) -> float:
        """Share of weight elements (biases excluded) that are non-zero; 1.0 without weights."""
        total = sum(t.numel() for t in self.weights)
        if total == 0:
            return 1.0
        return sum(count_nonzero(t) for t in self.weights) / total


def dtype_bits(dtype: torch.dtype) -> int:
    """Bits per element of ``dtype`` (``qint8`` → 8, ``float16`` → 16, ``quint4x2`` → 4)."""
    return _SUB_BYTE_BITS.get(dtype, dtype.itemsize * 8)


def count_nonzero(tensor: torch.Tensor) -> int:
    """Elements of ``tensor`` that are not exactly zero.

    A quantized tensor is counted on its integer representation: an element is zero when its integer
    equals the zero point (per tensor or per channel), which is exactly when its real value is 0.
    Schemes whose zero points are floats (embedding ``float_qparams``) are counted on the
    dequantized values. A sparse tensor (COO, CSR, CSC, BSR, BSC) is counted on its stored values,
    so an explicitly stored zero is a zero.
    """
    if tensor.layout != torch.strided:
        return int(torch.count_nonzero(_stored_values(tensor)))
    if not tensor.is_quantized:
        return int(torch.count_nonzero(tensor))
    scheme = tensor.qscheme()
    if scheme not in _AFFINE_SCHEMES:
        return int(torch.count_nonzero(tensor.dequantize()))
    integers = tensor.int_repr()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return int((integers != tensor.q_zero_point()).sum())
    shape = [1] * integers.dim()
    shape[tensor.q_per_channel_axis()] = -1
    return int((integers != tensor.q_per_channel_zero_points().view(shape)).sum())


def _stored_values(tensor: torch.Tensor) -> torch.Tensor:
    """The explicitly stored values of a sparse tensor (duplicates of a COO tensor summed)."""
    if tensor.layout == torch.sparse_coo:
        return tensor.coalesce().values()
    return tensor.values()


def named_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``model.named_modules()`` with the model itself named :data:`ROOT_NAME` instead of ``""``."""
    for name, module in model.named_modules():
        yield name or ROOT_NAME, module


def iter_layer_tensors(model: nn.Module) -> Iterator[LayerTensors]:
    """Yield every layer of ``model`` that owns weight or bias tensors, in ``named_modules`` order.

    Parameters are yielded as they are (so tied ones keep their identity); treat them as read-only.
    """
    with torch.no_grad():
        for name, module in named_modules(model):
            tensors = _own_tensors(module)
            if tensors:
                weights = tuple(t for n, t in tensors.items() if "bias" not in n)
                biases = tuple(t for n, t in tensors.items() if "bias" in n)
                yield LayerTensors(name, module, weights, biases)


def unique_tensors(layers: list[LayerTensors]) -> list[torch.Tensor]:
    """The tensors of ``layers``, each shared (tied) tensor once."""
    return list({id(t): t for layer in layers for t in layer.tensors}.values())


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(module, parametrize.ParametrizationList):
        return {}
    declared = getattr(module, _DECLARED_TENSORS, None)
    if callable(declared):
        return {n: t for n, t in declared().items() if t is not None}
    if isinstance(module, (DynamicRNNBase, DynamicRNNCellBase)):
        tensors = {**module.get_weight(), **module.get_bias()}
    elif _is_packed(module):
        tensors = _packed_tensors(module)
    else:
        return _parameter_tensors(module)
    if _packed_dtype(module) == torch.float16:
        # fp16 dynamic modules store fp16 weights but unpack them as fp32; the cast back is exact
        tensors = {n: t if "bias" in n else t.to(torch.float16) for n, t in tensors.items()}
    return tensors


def _is_packed(module: nn.Module) -> bool:
    """A ``torch.ao.nn`` quantized module, whose packed weight and bias are methods."""
    return type(module).__module__.startswith("torch.ao.nn.") and inspect.ismethod(
        getattr(module, "weight", None)
    )


def _packed_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype a dynamic quantized module packs its weights in (``None`` for other modules)."""
    if isinstance(module, DynamicLinear):
        return module._packed_params.dtype
    if isinstance(module, DynamicRNNBase):
        return module.dtype
    if isinstance(module, DynamicRNNCellBase):
        return module.weight_dtype
    return None


def _packed_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {"weight": module.weight()}
    bias = module.bias() if inspect.ismethod(getattr(module, "bias", None)) else None
    if bias is not None:
        tensors["bias"] = bias
    return tensors


def _parameter_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters(recurse=False):
        base = name.removesuffix(_PRUNE_ORIG_SUFFIX)
        mask = getattr(module, base + _PRUNE_MASK_SUFFIX, None) if base != name else None
        if isinstance(mask, torch.Tensor):
            tensors[base] = param * mask
        else:
            tensors[name] = param
    if parametrize.is_parametrized(module):
        for name in module.parametrizations:
            tensors[name] = getattr(module, name)
    return tensors
