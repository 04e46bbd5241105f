"""Helpers shared by the compression techniques: data requirements, quiet torch.ao, checked runs."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.spec import ParamValue, TrainingHooks
from netzip_mlflow.errors import CompressionError, ConfigError, DataError, ModelError
from netzip_mlflow.models.training import iter_batches, train

#: Longest string put in an ``info`` value (MLflow params hold at most 6000 characters).
MAX_INFO_CHARS = 1000
_MAX_ERROR_CHARS = 200

# torch.ao.quantization is deprecated in torch 2.x but still the only complete int8 CPU path; its
# warnings say nothing the user can act on. Some are attributed to the caller's frame (or to FX's
# generated code), so they are matched by message as well as by module.
_TORCH_AO_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel"),
)


@contextmanager
def quiet_torch_ao() -> Iterator[None]:
    """Silence torch.ao.quantization's deprecation and observer warnings inside the block."""
    with warnings.catch_warnings():
        for category, message in _TORCH_AO_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        yield


def require_data(data: Iterable | None, technique: str, why: str) -> Iterable:
    """Return ``data``, or raise ``ConfigError('data', ...)`` saying what the technique needs."""
    if data is None:
        raise ConfigError(
            "data",
            f"technique {technique!r} needs data {why}",
            "pass data=DataLoader(...) yielding (inputs, targets) batches",
        )
    return data


def set_quantized_engine(backend: str) -> None:
    """Select the int8 kernel backend (``torch.backends.quantized.engine``) for packing and running.

    Raises:
        CompressionError: the backend is not built into this torch on this machine.
    """
    supported = torch.backends.quantized.supported_engines
    if backend not in supported:
        raise CompressionError(
            f"quantized backend {backend!r} is not available on this machine; "
            f"set params.backend to one of: {', '.join(e for e in supported if e != 'none')}"
        )
    torch.backends.quantized.engine = backend


def calibrate(model: nn.Module, data: Iterable, batches: int) -> int:
    """Run up to ``batches`` batches of ``data`` through ``model`` (observers record ranges).

    Returns:
        The number of batches actually used.

    Raises:
        DataError: ``data`` yields no batch.
    """
    model.eval()
    used = 0
    with torch.no_grad():
        for inputs, _ in iter_batches(data, limit=batches):
            model(inputs)
            used += 1
    if used == 0:
        raise DataError("the calibration data yields no batch; pass a non-empty DataLoader")
    return used


@contextmanager
def _module_stack(model: nn.Module, strip_prefix: str = "") -> Iterator[list[str]]:
    """Track which modules' forwards are running; the last name is the innermost one."""
    stack: list[str] = []

    def enter(name: str) -> None:
        stack.append(name)

    def leave() -> None:  # a forward hook must return None, or it replaces the output
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        shown = f"{name.removeprefix(strip_prefix) or '<model>'} ({type(module).__name__})"
        handles.append(module.register_forward_pre_hook(lambda *_, n=shown: enter(n)))
        handles.append(module.register_forward_hook(lambda *_: leave()))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def run_checked(
    model: nn.Module,
    example_inputs: torch.Tensor,
    expected_shape: torch.Size | None,
    what: str,
    strip_prefix: str = "",
) -> None:
    """Run the compressed ``model`` once; name the failing module if it cannot run.

    Args:
        model: the compressed model.
        example_inputs: a batch it must accept.
        expected_shape: the original model's output shape on that batch (``None``: not checked).
        what: the technique, for the message.
        strip_prefix: a wrapper's prefix to remove from module names (e.g. ``"module."``).

    Raises:
        CompressionError: running failed (naming the innermost module that was running) or the
            output shape changed.
    """
    model.eval()
    with _module_stack(model, strip_prefix) as stack, torch.no_grad():
        try:
            output = model(example_inputs)
        except Exception as exc:  # any failure of the user's code or of a kernel
            where = stack[-1] if stack else "<model>"
            raise CompressionError(
                f"{what}: module {where} cannot run after compression: {_first_line(exc)}. "
                f"Replace or exclude that module, or choose another technique"
            ) from exc
    shape = output_shape(output)
    if expected_shape is not None and shape != expected_shape:
        raise CompressionError(
            f"{what}: the output shape changed from {tuple(expected_shape)} to "
            f"{None if shape is None else tuple(shape)}; this is a bug, please report it"
        )


def output_shape(output: Any) -> torch.Size | None:
    """The shape of a model's output when it is a tensor, else ``None``."""
    return output.shape if isinstance(output, torch.Tensor) else None


def reference_shape(model: nn.Module, example_inputs: torch.Tensor) -> torch.Size | None:
    """The output shape of the (uncompressed) ``model`` on ``example_inputs``, in eval mode.

    Raises:
        ModelError: the model cannot run on ``example_inputs``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            shape = output_shape(model(example_inputs))
    except Exception as exc:  # the user's forward can raise anything
        raise ModelError(
            f"the model cannot run on the example inputs of shape {tuple(example_inputs.shape)} "
            f"({_first_line(exc)}); pass example_inputs/data shaped as the model expects"
        ) from exc
    finally:
        model.train(was_training)
    return shape


def names_summary(names: Sequence[str]) -> str:
    """Comma-separated names, cut to fit an MLflow param (``"... (+N more)"``)."""
    text = ", ".join(names)
    if len(text) <= MAX_INFO_CHARS:
        return text
    kept: list[str] = []
    for name in names:
        if len(", ".join([*kept, name])) > MAX_INFO_CHARS - 20:
            break
        kept.append(name)
    return ", ".join(kept) + f", ... (+{len(names) - len(kept)} more)"


def train_for_technique(
    model: nn.Module,
    data: Iterable | None,
    params: dict[str, ParamValue],
    epochs: int,
    hooks: TrainingHooks,
    technique: str,
    prefix: str,
    weight_decay: float | None = None,
) -> dict[str, float | int]:
    """Train ``model`` with the shared loop for ``epochs``, with ``params``' lr and optimizer.

    Args:
        prefix: names the info entries, e.g. ``"finetune"`` gives ``finetune_epochs``.
        weight_decay: the optimizer's L2 penalty (``None``: the loop's default).

    Returns:
        Info entries: ``<prefix>_epochs`` and, when trained, the last epoch's ``<prefix>_loss``
        (mean per sample) and ``<prefix>_accuracy`` (training accuracy, 0-1).

    Raises:
        ConfigError: ``epochs > 0`` and no ``data``.
    """
    info: dict[str, float | int] = {f"{prefix}_epochs": epochs}
    if epochs == 0:
        return info
    data = require_data(data, technique, f"to train ({prefix} epochs > 0)")
    decay = {} if weight_decay is None else {"weight_decay": weight_decay}
    history = train(
        model, data, epochs, float(params["lr"]), optimizer=str(params["optimizer"]),
        on_epoch_end=hooks.on_epoch_end, progress=hooks.progress, **decay,
    )
    info.update({f"{prefix}_{key}": value for key, value in history[-1].items()})
    return info


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MAX_ERROR_CHARS:
        first = first[:_MAX_ERROR_CHARS] + "..."
    return f"{type(exc).__name__}: {first}"
