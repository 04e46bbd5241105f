"""The registry of compression techniques and :func:`compress`, the entry point that applies them.

Built-in techniques (names are a contract): ``ptq``, ``ptq_dynamic``, ``fp16``, ``qat``,
``prune_unstructured``, ``prune_structured``; also ``finetune`` (a pipeline step), ``distill``
(knowledge distillation into a narrower student), ``nni`` (NNI 3.0 pruners, optional extra) and
``pipeline`` (several techniques in order, see :mod:`netzip_mlflow.compression.pipeline`). More can
be added with :func:`register_technique`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression import (
    distill,
    finetune,
    nni_adapter,
    pipeline,
    pruning,
    quantization,
    structured,
)
from netzip_mlflow.compression.common import require_data
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import ParamValue, TechniqueSpec, TrainingHooks
from netzip_mlflow.errors import CompressionError, ConfigError, ModelError, short_repr
from netzip_mlflow.models.training import first_inputs

_REGISTRY: dict[str, TechniqueSpec] = {}


def register_technique(spec: TechniqueSpec, *, replace: bool = False) -> None:
    """Add a technique to the registry.

    Raises:
        ConfigError: a technique of that name exists and ``replace`` is False.
    """
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(
            "technique", f"{spec.name!r} is already registered", "pass replace=True to override it"
        )
    _REGISTRY[spec.name] = spec


for _spec in (
    *quantization.TECHNIQUES,
    *pruning.TECHNIQUES,
    *structured.TECHNIQUES,
    *finetune.TECHNIQUES,
    *distill.TECHNIQUES,
    *nni_adapter.TECHNIQUES,
    pipeline.PIPELINE_SPEC,
):
    register_technique(_spec)


def list_techniques() -> list[TechniqueSpec]:
    """Every registered technique, in registration order."""
    return list(_REGISTRY.values())


def get_technique(technique: str) -> TechniqueSpec:
    """The spec of ``technique``.

    Raises:
        ConfigError: field ``technique``; unknown name (the message lists the known ones).
    """
    spec = _REGISTRY.get(technique) if isinstance(technique, str) else None
    if spec is None:
        raise ConfigError(
            "technique",
            f"unknown technique {short_repr(technique)}",
            f"known techniques: {', '.join(_REGISTRY)}",
        )
    return spec


def validate_params(technique: str, params: Mapping[str, Any] | None) -> dict[str, ParamValue]:
    """Check ``params`` for ``technique`` and return them with defaults filled in.

    Raises:
        ConfigError: unknown technique (field ``technique``), unknown parameter, wrong type or value
            out of range (field ``params.<name>``, the message states the allowed values).
    """
    return get_technique(technique).validate(params)


def compress(
    model: nn.Module,
    technique: str | Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    data: Iterable | None = None,
    example_inputs: torch.Tensor | None = None,
    *,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> CompressionResult:
    """Compress a copy of ``model`` with ``technique``; the caller's model is never modified.

    Args:
        model: the float model to compress.
        technique: a registered technique name (see :func:`list_techniques`), or a list of pipeline
            steps ``[{"technique": ..., "params": {...}}, ...]`` applied in order (then ``params``
            must be ``None``; see :func:`~netzip_mlflow.compression.pipeline.compress_pipeline`).
        params: the technique's parameters; missing ones take their defaults.
        data: ``(inputs, targets)`` batches (a ``DataLoader``) for calibration, training or
            fine-tuning.
        example_inputs: a batch of inputs for tracing and dependency graphs; the first batch of
            ``data`` when ``None``.
        on_epoch_end: called as ``on_epoch_end(epoch, {"loss": ..., "accuracy": ...})`` after each
            training epoch of techniques that train (QAT, fine-tuning); epoch counts from 0.
        progress: show tqdm progress bars while training.

    Returns:
        The compressed model (a new object, in eval mode) and ``info`` facts to log.

    Raises:
        ConfigError: unknown technique, invalid params, or missing ``data``/``example_inputs`` the
            technique needs.
        ModelError: ``model`` is not a ``torch.nn.Module``.
        CompressionError: the technique cannot be applied to this model (the message says why).
    """
    if not isinstance(technique, str) and isinstance(technique, Sequence):
        if params is not None:
            raise ConfigError("params", "give the parameters inside each pipeline step")
        technique, params = pipeline.PIPELINE, {"steps": list(technique)}
    spec = get_technique(technique)
    checked = spec.validate(params)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_inputs is None and data is not None:
        example_inputs = first_inputs(data)
    work = _private_copy(model)
    hooks = TrainingHooks(on_epoch_end=on_epoch_end, progress=progress)
    result = apply_technique(spec, work, checked, data, example_inputs, hooks)
    result.model.eval()
    return result


def apply_technique(
    spec: TechniqueSpec,
    model: nn.Module,
    params: dict[str, Any],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Apply ``spec`` with already validated ``params`` to ``model`` itself (no copy).

    :func:`compress` (which copies first) is the public entry point; pipelines use this one to
    chain steps on one private copy.

    Raises:
        ConfigError: the technique needs ``data`` or ``example_inputs`` that are missing.
    """
    technique = spec.name
    if spec.needs_data:
        require_data(data, technique, f"({spec.data_usage})")
    if spec.needs_example_inputs and example_inputs is None:
        raise ConfigError(
            "example_inputs", f"technique {technique!r} needs an input batch to trace the model",
            "pass example_inputs=<tensor batch> or data=DataLoader(...)",
        )
    return spec.apply(model, params, data, example_inputs, hooks)


def _private_copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # deepcopy can fail in many ways on user modules
        raise CompressionError(
            f"the model cannot be copied ({type(exc).__name__}: {exc}); compression works on a "
            "copy so the original stays intact: make the model deep-copyable"
        ) from exc
