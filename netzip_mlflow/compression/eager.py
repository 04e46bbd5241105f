"""Eager-mode static int8 quantization: the fallback for models FX cannot trace.

Eager mode needs the fusable module sequences named explicitly. :func:`find_fusable` discovers them
from one forward pass: it records which leaf module consumed which leaf module's output tensor, and
groups ``Conv -> BatchNorm [-> ReLU]``, ``Conv -> ReLU`` and ``Linear -> ReLU`` chains whose modules
are each called exactly once (a ReLU module reused elsewhere, as in torchvision's ResNet blocks, is
never fused away).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.ao.quantization import (
    QuantWrapper,
    convert,
    fuse_modules,
    get_default_qconfig,
    prepare,
)

from netzip_mlflow.compression.common import calibrate

_BN_FOR_CONV: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
}

#: Prefix of the user's modules inside the :class:`QuantWrapper`.
WRAPPED_PREFIX = "module."


@dataclass
class _Call:
    name: str
    module: nn.Module
    output: object
    consumers: list[_Call]


def _record_leaf_calls(model: nn.Module, example_inputs: torch.Tensor) -> list[_Call]:
    """Run ``model`` once and link every leaf-module call to the calls that consumed its output."""
    calls: list[_Call] = []
    # id(tensor) -> the call that produced it; the tensors stay alive in `calls`, so ids are unique
    producer: dict[int, _Call] = {}

    def hook(module: nn.Module, args: tuple, output: object, name: str) -> None:
        call = _Call(name, module, output, [])
        source = producer.get(id(args[0])) if args else None
        if source is not None:
            source.consumers.append(call)
        calls.append(call)
        producer[id(output)] = call

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    handles = [
        m.register_forward_hook(lambda mod, a, out, n=n: hook(mod, a, out, n)) for n, m in leaves
    ]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def find_fusable(model: nn.Module, example_inputs: torch.Tensor) -> list[list[str]]:
    """Names of module sequences that ``torch.ao.quantization.fuse_modules`` can fuse.

    Args:
        model: the float model, in eval mode.
        example_inputs: a batch to run it on.

    Returns:
        Groups such as ``[["conv1", "bn1", "relu1"], ["fc1", "relu2"]]``.
    """
    calls = _record_leaf_calls(model, example_inputs)
    call_counts: dict[int, int] = {}
    for call in calls:
        call_counts[id(call.module)] = call_counts.get(id(call.module), 0) + 1

    def single(call: _Call) -> bool:
        return call_counts[id(call.module)] == 1

    def next_of(call: _Call, kind: type[nn.Module]) -> _Call | None:
        found = [c for c in call.consumers if type(c.module) is kind and single(c)]
        return found[0] if len(call.consumers) == 1 and found else None

    groups: list[list[str]] = []
    for call in calls:
        if not single(call) or type(call.module) not in (*_BN_FOR_CONV, nn.Linear):
            continue
        chain = [call]
        bn_type = _BN_FOR_CONV.get(type(call.module))
        bn = next_of(call, bn_type) if bn_type is not None else None
        if bn is not None:
            chain.append(bn)
        relu = next_of(chain[-1], nn.ReLU)
        if relu is not None:
            chain.append(relu)
        if len(chain) > 1:
            groups.append([c.name for c in chain])
    return groups


def quantize_eager(
    model: nn.Module, example_inputs: torch.Tensor, data: Iterable, batches: int, backend: str
) -> tuple[nn.Module, int, int]:
    """Fuse, wrap in quant/dequant stubs, calibrate and convert ``model`` (modified in place).

    Returns:
        ``(quantized model, calibration batches used, fused groups)``. The user's modules are under
        ``WRAPPED_PREFIX`` in the returned wrapper.
    """
    model.eval()
    groups = find_fusable(model, example_inputs)
    if groups:
        fuse_modules(model, groups, inplace=True)
    wrapped = QuantWrapper(model)
    wrapped.qconfig = get_default_qconfig(backend)
    prepare(wrapped, inplace=True)
    used = calibrate(wrapped, data, batches)
    convert(wrapped, inplace=True)
    return wrapped, used, len(groups)
