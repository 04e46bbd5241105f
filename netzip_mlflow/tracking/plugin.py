"""The ``netzip`` model evaluator for ``mlflow.models.evaluate`` (entry point ``mlflow.model_evaluator``).

::

    mlflow.models.evaluate(
        model=netzip_mlflow.load_pyfunc("models:/<model id>"),  # or a URI string / any PyFuncModel
        data=x_flat,                           # 2-D: one flattened image per row
        targets=y,                             # integer class labels
        model_type="netzip",
        evaluators=["netzip"],
        evaluator_config={"netzip": {"input_shape": [1, 8, 8], "baseline_run_id": "<run id>"}},
    )

MLflow's evaluation datasets are 2-D, so images arrive flattened and ``input_shape`` (C, H, W)
restores them. The raw ``torch.nn.Module`` is taken out of the pyfunc (``get_raw_model``) and measured
by :func:`netzip_mlflow.evaluation.evaluator.measure` on the CPU unless ``device`` says otherwise;
the report is logged by :func:`netzip_mlflow.tracking.logging.log_report`.

Metrics are logged exactly once and linked to the LoggedModel: when MLflow knows the model id (a
``models:/`` URI, a ``PyFuncModel`` or an active model) ``mlflow.models.evaluate`` itself logs the
returned metrics to the run and the model after the evaluators return, so this evaluator logs only
params, tags and artifacts; otherwise (a ``runs:/`` URI) it logs the metrics itself, linked to the
model id recorded in the model's metadata.

MLflow does not validate ``model_type`` against a fixed list (only its built-in evaluators check it in
their ``can_evaluate``), so ``model_type="netzip"`` needs no registration. The evaluator also joins
MLflow's own classifier evaluation as an extra evaluator, adding the NetZIP metrics to the same
result::

    mlflow.models.evaluate(model_uri, x_flat, targets=y, model_type="classifier",
                           evaluators=["default", "netzip"],
                           evaluator_config={"netzip": {"input_shape": [1, 8, 8]}})

:meth:`can_evaluate` is True for ``model_type="netzip"``, and for ``"classifier"`` only when the
``netzip`` config names an ``input_shape`` (i.e. the user asked for it): it never takes over another
evaluation.

Trust: given a URI string, ``mlflow.models.evaluate`` loads the model itself, through the loader
its stored ``MLmodel`` names (a pickle for ``mlflow.pytorch``), before any evaluator runs, so no
evaluator can make that safe. For a store you do not fully trust pass
``model=netzip_mlflow.load_pyfunc(uri)``: the model rebuilt from the run's hash-checked tensors
(:mod:`netzip_mlflow.tracking.stored_model`), never unpickled unless ``trust=True``.

This module is imported by MLflow's plugin discovery whenever ``mlflow.models`` is imported; torch
and the measurement code are imported only when an evaluation runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models.evaluation import EvaluationResult, ModelEvaluator
from mlflow.models.evaluation.artifacts import CsvEvaluationArtifact, ImageEvaluationArtifact
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from netzip_mlflow.errors import ConfigError, DataError, ModelError, short_repr
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.tracking import keys
from netzip_mlflow.validation import config_error, field_path, nested

MODEL_TYPE = "netzip"
JOINED_MODEL_TYPES = ("classifier",)  # MLflow's own types this evaluator joins when configured
EVALUATOR_NAME = "netzip"
IGNORED_KEYS = frozenset({"col_mapping"})  # MLflow reads these itself
RESULT_FOLDERS = ("ops", "confusion", "class_impact")  # what log_report wrote that the result names
TAG_KEYS = {"study": keys.TAG_STUDY, "technique": keys.TAG_TECHNIQUE, "recipe": keys.TAG_RECIPE}


FLAT_KEYS = {
    "latency_budget_s": "latency.budget_s",
    "latency_target_ci_rel": "latency.target_ci_rel",
    "warmup_s": "latency.warmup_s",
    "score_at_chance": "ratios.score_at_chance",
}
"""Flat ``evaluator_config`` keys -> the :class:`EvaluationConfig` field they set (``latency`` and
``ratios`` may also be given as mappings)."""

PLUGIN_DEFAULTS = {"progress": False}
"""Where the plugin's default differs from :class:`EvaluationConfig`'s: no progress bars inside
``mlflow.models.evaluate`` (set ``progress: True`` to have them)."""


class PluginConfig(BaseModel):
    """The ``evaluator_config`` of the ``netzip`` evaluator.

    Every setting of :class:`~netzip_mlflow.evaluation.settings.EvaluationConfig` is a key
    (``batch_size``, ``threads``, ``device``, ``idle_s``, ``latency: {budget_s: ...}``, ``ratios:
    {...}``, ``class_names``, ...), validated by that model: its defaults, bounds and descriptions hold
    here too, except ``progress`` (default False, :data:`PLUGIN_DEFAULTS`). The flat keys of
    :data:`FLAT_KEYS` (``latency_budget_s``, ``latency_target_ci_rel``, ``warmup_s``,
    ``score_at_chance``) set the nested fields. Besides:

    Attributes:
        input_shape: (C, H, W) of one sample; each data row holds C*H*W values in this order.
        task: ``"classification"``.
        baseline_run_id: run id of a logged baseline evaluation; with it the metrics include the
            agreement, the four ratios, the OCS and the class-level impact.
        evaluation: the measurement settings.
        tags: extra MLflow tags; ``study``, ``technique`` and ``recipe`` set the ``netzip.*`` tags
            the leaderboard filters on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_shape: tuple[int, ...]
    task: str = "classification"
    baseline_run_id: str | None = None
    evaluation: EvaluationConfig = Field(default_factory=lambda: EvaluationConfig(**PLUGIN_DEFAULTS))
    tags: tuple[tuple[str, str], ...] = ()

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape(cls, shape: Any) -> tuple[int, ...]:
        if (
            not isinstance(shape, (list, tuple))
            or not shape
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise ValueError(f"{short_repr(shape)} is not a list of positive integers (e.g. [3, 32, 32] for (C, H, W))")
        return tuple(int(d) for d in shape)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None) -> PluginConfig:
        """Validate an ``evaluator_config`` dict; errors name the key as given and the fix."""
        config = dict(config or {})
        tags = {TAG_KEYS[k]: str(config.pop(k)) for k in list(config) if k in TAG_KEYS}
        for key in IGNORED_KEYS:
            config.pop(key, None)
        own = set(cls.model_fields) - {"evaluation", "tags"}
        known = own | set(FLAT_KEYS) | set(EvaluationConfig.model_fields)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(
                "evaluator_config", f"unknown key(s) {unknown}",
                f"use: {', '.join(sorted(known | set(TAG_KEYS)))}",
            )
        if "input_shape" not in config:
            raise ConfigError(
                "evaluator_config.input_shape", "missing",
                'give the shape of one sample, e.g. {"input_shape": [3, 32, 32]}',
            )
        top = {key: config.pop(key) for key in own if key in config}
        flat = {FLAT_KEYS[key]: config.pop(key) for key in list(config) if key in FLAT_KEYS}
        flat = {path: value for path, value in flat.items() if value is not None}  # None: the default
        try:
            settings = nested(flat, {**PLUGIN_DEFAULTS, **config})
        except KeyError as exc:
            given = next(k for k, path in FLAT_KEYS.items() if path == exc.args[0])
            raise ConfigError(
                f"evaluator_config.{given}", f"sets {exc.args[0]}, which the config gives already", "give it once"
            ) from None
        try:
            return cls.model_validate({**top, "evaluation": settings, "tags": tuple(sorted(tags.items()))})
        except ValidationError as exc:
            raise config_error(exc, lambda loc: _key_as_given(loc, set(flat))) from None


def _key_as_given(loc: tuple[Any, ...], flat: set[str]) -> str:
    """The ``evaluator_config`` key the user wrote for an error at ``loc`` of :class:`PluginConfig`."""
    if loc[:1] != ("evaluation",):
        return field_path(loc, "evaluator_config")
    path = field_path(loc[1:])
    for key, target in FLAT_KEYS.items():
        if target == path and target in flat:
            return f"evaluator_config.{key}"
    return field_path(loc[1:], "evaluator_config")


def raw_torch_module(model: Any) -> Any:
    """The ``torch.nn.Module`` inside an MLflow pyfunc model (``mlflow.pytorch`` flavor).

    Raises :class:`ModelError` for models that hold no torch module, and for models served in
    another environment (``env_manager`` other than ``"local"``), whose module cannot be reached.
    """
    from torch import nn

    if isinstance(model, nn.Module):
        return model
    raw = None
    for getter in ("get_raw_model", "unwrap_python_model"):
        try:
            raw = getattr(model, getter)()
        except Exception:  # noqa: BLE001 - each pyfunc flavor raises its own kind; try the next
            continue
        if isinstance(raw, nn.Module):
            return raw
    flavor = None
    metadata = getattr(model, "metadata", None)
    if metadata is not None:
        flavor = metadata.flavors.get("python_function", {}).get("loader_module")
    raise ModelError(
        f"the netzip evaluator needs a PyTorch model, got a pyfunc of flavor {flavor!r} "
        f"(inner object {type(raw).__name__}); log the model with mlflow.pytorch.log_model or "
        "netzip_mlflow.tracking.model_logging.log_torch_model, and evaluate with env_manager='local'"
    )


def _labels(targets: Any) -> np.ndarray:
    if targets is None:
        raise DataError(
            "the netzip evaluator needs class labels: pass targets= to mlflow.models.evaluate "
            "(an array, or the name of the label column of a DataFrame)"
        )
    labels = np.asarray(targets).reshape(-1)
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DataError(
            f"targets must be non-negative integer class labels, got dtype {labels.dtype}; "
            "encode the classes as 0..K-1"
        )
    return labels.astype(np.int64)


def restore_images(features: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """Rows of flattened samples (N, prod(shape)) -> float32 array (N, *input_shape)."""
    array = features.to_numpy() if hasattr(features, "to_numpy") else np.asarray(features)
    if array.ndim != 2:
        raise DataError(f"expected 2-D data (one flattened sample per row), got shape {array.shape}")
    per_sample = math.prod(input_shape)
    if array.shape[1] != per_sample:
        raise DataError(
            f"each row has {array.shape[1]} values but input_shape {list(input_shape)} needs "
            f"{per_sample}; set evaluator_config['input_shape'] to the shape of one sample"
        )
    try:
        array = array.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"the data is not numeric ({exc}); pass pixel values only") from exc
    return array.reshape(-1, *input_shape)


def _result_artifacts(artifact_uri: str, paths: list[str]) -> dict[str, Any]:
    """EvaluationArtifacts (loaded lazily from the run) for the logged CSV and PNG files."""
    kinds = {".csv": CsvEvaluationArtifact, ".png": ImageEvaluationArtifact}
    out: dict[str, Any] = {}
    for rel in paths:
        kind = kinds.get(Path(rel).suffix)
        if kind is not None:
            name = Path(rel).with_suffix("").as_posix().replace("/", "_")
            out[name] = kind(uri=f"{artifact_uri.rstrip('/')}/{rel}")
    return out


class NetzipEvaluator(ModelEvaluator):
    """Every NetZIP metric of a PyTorch classifier, as an MLflow model evaluator (``"netzip"``)."""

    name = EVALUATOR_NAME

    @classmethod
    def can_evaluate(cls, *, model_type: str | None, evaluator_config: Mapping[str, Any] | None, **kwargs: Any) -> bool:
        """True for ``model_type="netzip"``, and for ``"classifier"`` when configured with ``input_shape``."""
        if model_type == MODEL_TYPE:
            return True
        return model_type in JOINED_MODEL_TYPES and isinstance(evaluator_config, Mapping) and "input_shape" in evaluator_config

    def evaluate(
        self,
        *,
        model_type: str,
        dataset: Any,
        run_id: str,
        evaluator_config: Mapping[str, Any] | None,
        model: Any = None,
        extra_metrics: Any = None,
        custom_artifacts: Any = None,
        predictions: Any = None,
        model_id: str | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Measure the model on ``dataset``, log the report to ``run_id``, return the metrics.

        Returns an :class:`EvaluationResult` with every metric key of ``keys.METRICS`` that
        could be measured and artifacts ``ops_per_layer`` (CSV) and ``confusion_confusion_matrix``
        (PNG), plus the class-level impact tables and figures with a baseline.
        """
        from mlflow.tracking import MlflowClient

        from netzip_mlflow.evaluation.evaluator import measure
        from netzip_mlflow.tracking.logging import log_report
        from netzip_mlflow.tracking.runs import resolve_baseline

        if model is None:
            raise ModelError("the netzip evaluator measures a model: pass model= (a models:/ or runs:/ URI)")
        if model_type == MODEL_TYPE and (extra_metrics or custom_artifacts):  # beside "default", they are its
            raise ConfigError(
                "extra_metrics", "the netzip evaluator does not run extra metrics or custom artifacts",
                "evaluate them in a separate mlflow.models.evaluate call with another evaluator",
            )
        config = PluginConfig.from_mapping(evaluator_config)
        module = raw_torch_module(model)
        data = self._torch_data(dataset, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            report = measure(
                module, data, task=config.task, config=config.evaluation,
                baseline=resolve_baseline(config.baseline_run_id),
            )
        report.tags.update(dict(config.tags))
        # mlflow.models.evaluate logs the returned metrics itself when it knows the model id;
        # logging them here too would duplicate every metric entry.
        mlflow_logs_metrics = model_id is not None
        linked_model = model_id or getattr(getattr(model, "metadata", None), "model_id", None)
        client = MlflowClient()
        log_report(
            report, run_id, client,
            log_metrics=not mlflow_logs_metrics,
            model_id=linked_model,
            dataset_name=getattr(dataset, "name", None),
            dataset_digest=getattr(dataset, "digest", None),
            confusion=True,
        )
        artifact_uri = client.get_run(run_id).info.artifact_uri
        logged = [f.path for folder in RESULT_FOLDERS for f in _list_recursive(client, run_id, folder)]
        return EvaluationResult(
            metrics=dict(report.metrics), artifacts=_result_artifacts(artifact_uri, logged), run_id=run_id
        )

    @staticmethod
    def _torch_data(dataset: Any, config: PluginConfig) -> Any:
        import torch
        from torch.utils.data import TensorDataset

        images = restore_images(dataset.features_data, config.input_shape)
        labels = _labels(dataset.labels_data)
        if len(labels) != len(images):
            raise DataError(f"{len(images)} samples but {len(labels)} targets; pass one label per row")
        if not len(images):
            raise DataError("the evaluation data is empty; pass at least one sample")
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


def _list_recursive(client: Any, run_id: str, path: str | None = None) -> list[Any]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files.extend(_list_recursive(client, run_id, info.path) if info.is_dir else [info])
    return files
