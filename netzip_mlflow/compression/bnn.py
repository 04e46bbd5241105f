"""``bnn``: a binarized network (weights and activations +-1), trained from the float model, shipped
bit-packed.

Every ``nn.Conv2d`` / ``nn.Linear`` the forward pass runs is binarized except the first and the last
one run (the first convolution and the classifier, as in larq's binary ResNet18); BatchNorm stays
float. The model trains with the shared loop (Adam, cosine schedule, no weight decay on the latent
weights) and is then converted to its packed inference form (:mod:`netzip_mlflow.compression.binary`).

With binary activations every ``nn.ReLU`` module becomes ``nn.Identity``: after a ReLU every input
is >= 0, so its sign would be +1 everywhere; binary networks (Bi-Real Net, larq's binary ResNets) use
the sign itself as the non-linearity. A binary layer whose input is still never negative on the
example batch (a functional ReLU in ``forward``) is refused, named.

The packed file (:func:`save_packed` / :func:`load_packed`) is ``torch.save`` of a dict of plain
types and tensors, read back with ``weights_only=True`` (no pickle of code)::

    {"format": "netzip-bnn", "version": 1,
     "layers": {"<module name>": {"kind": "Conv2d" | "Linear", "scaling": bool,
                                  "binary_activations": bool, "shortcut": bool}, ...},
     "identities": ["<module name>", ...],   # modules that are nn.Identity in the packed model
     "state_dict": {...}}                    # packed_weight (uint8), scale, bias, float layers, BN

Loading needs the float architecture (e.g. ``build_model("resnet18", 10, (1, 28, 28))``): the named
layers are replaced by empty packed ones, the ReLUs by identities, and the state dict is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.binary import (
    PACKED_FOR_FLOAT,
    PACKED_LAYERS,
    TRAINING_LAYERS,
    BinaryOptions,
)
from netzip_mlflow.compression.common import (
    names_summary,
    reference_shape,
    run_checked,
    train_for_technique,
)
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    LR,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.errors import CompressionError, ModelError
from netzip_mlflow.tracking import keys

PACKED_FORMAT = "netzip-bnn"
PACKED_VERSION = 1
#: Value of the ``netzip.latency.kernels`` tag of a binarized model.
FLOAT_KERNELS_NOTE = (
    "float32: binary weights are unpacked and run on float kernels (PyTorch has no XNOR/popcount "
    "kernels), so the binary model is not faster; speed/chats is its theoretical speed"
)
_CANDIDATES = tuple(TRAINING_LAYERS)


@dataclass(frozen=True)
class BinaryPlan:
    """What :func:`binarize` changed.

    Attributes:
        layers: binarized module names (execution order) and their options.
        kept: the first and last layer run, kept float.
        identities: ``nn.ReLU`` modules replaced by ``nn.Identity`` (binary activations only).
    """

    layers: dict[str, BinaryOptions]
    kept: tuple[str, str]
    identities: tuple[str, ...]


def execution_order(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """Names of the ``nn.Conv2d`` / ``nn.Linear`` modules (exact types) in the order the forward
    pass first runs them on ``example_inputs`` (eval mode, no gradients)."""
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda *_, n=name: order.append(n) if n not in order else None)
        for name, module in model.named_modules()
        if type(module) in _CANDIDATES
    ]
    try:
        reference_shape(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order


def binarize(model: nn.Module, example_inputs: torch.Tensor, options: BinaryOptions) -> BinaryPlan:
    """Replace the layers to binarize in ``model`` (in place) by training binary layers.

    ``options.shortcut`` applies to convolutions whose channel counts divide one another; others
    (and every Linear) get no shortcut.

    Raises:
        CompressionError: no layer besides the first and the last to binarize; a layer to binarize
            has frozen weights or a non-zero padding mode; a binary layer's input is never negative.
    """
    order = execution_order(model, example_inputs)
    if len(order) < 3:
        kinds = f"Conv2d/Linear layers run: {', '.join(order) or 'none'}"
        raise CompressionError(
            f"bnn: the model has no Conv2d/Linear layer besides the first and the classifier to "
            f"binarize ({kinds}); use ptq or a pruning technique instead"
        )
    layers: dict[str, BinaryOptions] = {}
    for name in order[1:-1]:
        module = model.get_submodule(name)
        _check_binarizable(name, module)
        layer = TRAINING_LAYERS[type(module)].from_float(module, options)
        _replace(model, name, layer)
        layers[name] = layer.options
    identities: tuple[str, ...] = ()
    if options.binary_activations:
        identities = tuple(n for n, m in model.named_modules() if type(m) is nn.ReLU)
        for name in identities:
            _replace(model, name, nn.Identity())
        _check_inputs_signed(model, example_inputs, list(layers))
    return BinaryPlan(layers, (order[0], order[-1]), identities)


def _check_binarizable(name: str, module: nn.Module) -> None:
    if not module.weight.requires_grad:
        raise CompressionError(
            f"bnn: module {name} ({type(module).__name__}) has frozen weights (requires_grad=False) "
            "and cannot be trained as a binary layer; unfreeze it"
        )
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise CompressionError(
            f"bnn: module {name} (Conv2d) uses padding_mode {module.padding_mode!r}; binary "
            "convolutions support zero padding only"
        )


def _check_inputs_signed(model: nn.Module, example_inputs: torch.Tensor, names: list[str]) -> None:
    """Refuse a binary layer whose input has no negative value: its activations would all be +1."""
    unsigned: list[str] = []

    def check(name: str, inputs: tuple[torch.Tensor, ...]) -> None:
        if name not in unsigned and not bool((inputs[0] < 0).any()):
            unsigned.append(name)

    handles = [
        model.get_submodule(n).register_forward_pre_hook(lambda _m, i, n=n: check(n, i)) for n in names
    ]
    try:
        reference_shape(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    if unsigned:
        raise CompressionError(
            f"bnn: the input of module {unsigned[0]} is never negative on the example batch, so its "
            "binary activations would all be +1 (a ReLU or other non-negative function called in "
            "forward before it?); remove that function or use activations: float"
        )


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def to_packed(model: nn.Module) -> nn.Module:
    """Replace every training binary layer of ``model`` (in place) by its packed inference layer."""
    for name, module in list(model.named_modules()):
        packed_type = PACKED_LAYERS.get(type(module))
        if packed_type is not None:
            _replace(model, name, packed_type.from_trained(module))
    return model


def packed_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The packed binary layers of ``model`` by name."""
    packed = tuple(PACKED_LAYERS.values())
    return {n: m for n, m in model.named_modules() if isinstance(m, packed)}


# ------------------------------------------------------------------------------- packed file


def packed_file_content(model: nn.Module) -> dict[str, Any]:
    """The dict :func:`save_packed` writes (see the module docstring for its layout).

    Raises:
        ModelError: ``model`` has no packed binary layer.
    """
    layers = packed_layers(model)
    if not layers:
        raise ModelError(
            "the model has no packed binary layer; save_packed takes the model that the bnn "
            "technique returns"
        )
    return {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "layers": {
            name: {"kind": "Conv2d" if hasattr(m, "kernel_size") else "Linear", **m.options.as_dict()}
            for name, m in layers.items()
        },
        "identities": [n for n, m in model.named_modules() if type(m) is nn.Identity],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_packed(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the packed binarized ``model`` to ``path`` (``torch.save`` of plain types and tensors).

    Returns:
        The path written.
    """
    path = Path(path)
    torch.save(packed_file_content(model), path)
    return path


def load_packed(path: str | os.PathLike[str], model: nn.Module) -> nn.Module:
    """Load a packed file into ``model``, the float architecture it was binarized from (modified in
    place and returned, in eval mode). Read with ``weights_only=True``: no code is unpickled.

    Raises:
        ModelError: not a packed bnn file, or ``model`` does not have the file's layers.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a missing, truncated or foreign file
        raise ModelError(
            f"cannot read packed bnn file {os.fspath(path)!r} ({type(exc).__name__}: {exc}); pass a "
            "file written by save_packed"
        ) from exc
    if not isinstance(content, dict) or content.get("format") != PACKED_FORMAT:
        raise ModelError(f"{os.fspath(path)!r} is not a packed bnn file (format {PACKED_FORMAT!r} expected)")
    if content.get("version") != PACKED_VERSION:
        raise ModelError(f"{os.fspath(path)!r}: packed bnn format version {content.get('version')!r} is not supported")
    for name, spec in content["layers"].items():
        module = _submodule(model, name)
        if type(module).__name__ != spec["kind"] or type(module) not in PACKED_FOR_FLOAT:
            raise ModelError(
                f"module {name} of the model is a {type(module).__name__}, the packed file has a "
                f"binary {spec['kind']} there; pass the float architecture the file was made from"
            )
        options = BinaryOptions(spec["scaling"], spec["binary_activations"], spec["shortcut"])
        _replace(model, name, PACKED_FOR_FLOAT[type(module)].like(module, options))
    for name in content["identities"]:
        module = _submodule(model, name)
        if type(module) not in (nn.ReLU, nn.Identity):
            raise ModelError(
                f"module {name} of the model is a {type(module).__name__}, the packed file has an "
                "identity there (a ReLU it removed); pass the float architecture the file was made from"
            )
        _replace(model, name, nn.Identity())
    try:
        model.load_state_dict(content["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"the packed file does not fit the model ({str(exc).splitlines()[0]}); pass the float "
            "architecture the file was made from"
        ) from exc
    return model.eval()


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ModelError(
            f"the model has no module {name!r}, which the packed file binarized; pass the float "
            "architecture the file was made from"
        ) from exc


# ---------------------------------------------------------------------------------- technique


def _bnn(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Binarize, train (Adam, cosine, no weight decay), pack."""
    model = model.cpu()
    expected = reference_shape(model, example_inputs)
    options = BinaryOptions(
        scaling=params["scaling"] == "channel",
        binary_activations=params["activations"] == "binary",
        shortcut=params["shortcut"] == "layer",
    )
    plan = binarize(model, example_inputs, options)
    epochs = int(params["epochs"])
    training = {"lr": params["lr"], "optimizer": "adam"}
    info: dict[str, Any] = dict(
        train_for_technique(model, data, training, epochs, hooks, "bnn", "bnn", weight_decay=0.0)
    )
    packed = to_packed(model).eval()
    run_checked(packed, example_inputs, expected, "bnn")
    layers = packed_layers(packed)
    info.update(
        binary_layers=len(layers),
        binary_layer_names=names_summary(list(layers)),
        float_layers=", ".join(plan.kept),
        shortcut_layers=sum(o.shortcut for o in plan.layers.values()),
        relu_removed=len(plan.identities),
        packed_weight_bytes=sum(m.packed_weight.numel() for m in layers.values()),
    )
    return CompressionResult(packed, info, tags={keys.TAG_LATENCY_KERNELS: FLOAT_KERNELS_NOTE})


BNN = TechniqueSpec(
    name="bnn",
    description="binarized network: +-1 weights and activations (STE), trained, bit-packed",
    params=(
        epochs_param("epochs", 2, "training epochs of the binary network (Adam, cosine)", low=1),
        LR,
        ParamSpec("scaling", str, "none", "channel: multiply each output channel by the mean |W| "
                  "of its latent weights (XNOR-Net)", choices=("none", "channel")),
        ParamSpec("activations", str, "binary", "float keeps real-valued inputs (a binary-weight "
                  "network, BWN)", choices=("binary", "float")),
        ParamSpec("shortcut", str, "block", "layer: a real-valued identity shortcut around every "
                  "binary convolution (Bi-Real Net)", choices=("block", "layer")),
    ),
    needs_data=True,
    needs_example_inputs=True,
    data_usage="training batches (inputs, class-index targets)",
    apply=_bnn,
    final=True,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (BNN,)
