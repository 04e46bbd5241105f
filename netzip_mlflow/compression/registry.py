"""The store of compression techniques and :func:`compress`, the entry point that applies them.

The store knows no technique itself. On first use it loads its providers, in this order:

1. the built-in techniques (:mod:`netzip_mlflow.compression.builtins`; names are a contract:
   ``ptq``, ``ptq_dynamic``, ``fp16``, ``qat``, ``prune_unstructured``, ``prune_structured``, and
   ``finetune``, ``distill``, ``bnn``, ``nni``, ``pipeline``, and ``onnx`` / ``openvino`` (the model
   exported to a deployment runtime, float32 or int8; see :mod:`netzip_mlflow.compression.export`));
2. every entry point of the group ``netzip_mlflow.techniques`` (:data:`ENTRY_POINT_GROUP`), the way
   MLflow finds evaluators: a third-party package declares, e.g. in its ``pyproject.toml``::

       [project.entry-points."netzip_mlflow.techniques"]
       my_technique = "my_package.compression:TECHNIQUES"

   where the object is a :class:`~netzip_mlflow.compression.spec.TechniqueSpec`, a sequence of them,
   or a function without arguments returning either. A provider that fails to load is skipped with a
   warning; the others stay available.

:func:`register_technique` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.common import require_data
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import ParamValue, TechniqueSpec, TrainingHooks
from netzip_mlflow.errors import CompressionError, ConfigError, ModelError, short_repr
from netzip_mlflow.models.training import first_inputs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "netzip_mlflow.techniques"
BUILTIN_PROVIDER = "netzip_mlflow.compression.builtins"
#: The technique name under which pipelines are registered (and tagged in MLflow).
PIPELINE = "pipeline"

_REGISTRY: dict[str, TechniqueSpec] = {}
_loaded = False


def _specs_of(obj: Any) -> list[TechniqueSpec]:
    if callable(obj) and not isinstance(obj, TechniqueSpec):
        obj = obj()
    items = [obj] if isinstance(obj, TechniqueSpec) else list(obj)
    bad = [type(item).__name__ for item in items if not isinstance(item, TechniqueSpec)]
    if bad:
        raise TypeError(f"expected TechniqueSpec objects, got {', '.join(bad)}")
    return items


def load_entry_points() -> list[str]:
    """Register the techniques of every ``netzip_mlflow.techniques`` entry point; their names."""
    names: list[str] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            specs = _specs_of(entry.load())
            for spec in specs:
                register_technique(spec)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            log.warning("compression techniques of entry point %r (%s) not loaded: %s", entry.name, entry.value, exc)
            continue
        names.extend(spec.name for spec in specs)
    return names


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: the providers call register_technique
    importlib.import_module(BUILTIN_PROVIDER).register_builtins()
    load_entry_points()


def register_technique(spec: TechniqueSpec, *, replace: bool = False) -> None:
    """Add a technique to the store.

    Raises:
        ConfigError: a technique of that name exists and ``replace`` is False.
    """
    _ensure_loaded()
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(
            "technique", f"{spec.name!r} is already registered", "pass replace=True to override it"
        )
    _REGISTRY[spec.name] = spec


def list_techniques() -> list[TechniqueSpec]:
    """Every registered technique, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def get_technique(technique: str) -> TechniqueSpec:
    """The spec of ``technique``.

    Raises:
        ConfigError: field ``technique``; unknown name (the message lists the known ones).
    """
    _ensure_loaded()
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
        technique, params = PIPELINE, {"steps": list(technique)}
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
