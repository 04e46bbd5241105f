"""The ``netzip`` model evaluator for ``mlflow.models.evaluate`` (entry point ``mlflow.model_evaluator``).

::

    mlflow.models.evaluate(
        model="models:/<model id>",            # or "runs:/<run id>/model", or a PyFuncModel
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

This module is imported by MLflow's plugin discovery whenever ``mlflow.models`` is imported; torch
and the measurement code are imported only when an evaluation runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models.evaluation import EvaluationResult, ModelEvaluator
from mlflow.models.evaluation.artifacts import CsvEvaluationArtifact, ImageEvaluationArtifact

from netzip_mlflow.errors import ConfigError, DataError, ModelError
from netzip_mlflow.tracking import keys

MODEL_TYPE = "netzip"
JOINED_MODEL_TYPES = ("classifier",)  # MLflow's own types this evaluator joins when configured
EVALUATOR_NAME = "netzip"
IGNORED_KEYS = frozenset({"col_mapping"})  # MLflow reads these itself
RESULT_FOLDERS = ("ops", "confusion", "class_impact")  # what log_report wrote that the result names
TAG_KEYS = {"study": keys.TAG_STUDY, "technique": keys.TAG_TECHNIQUE, "recipe": keys.TAG_RECIPE}


@dataclass(frozen=True)
class PluginConfig:
    """The ``evaluator_config`` of the ``netzip`` evaluator.

    Attributes:
        input_shape: (C, H, W) of one sample; each data row holds C*H*W values in this order.
        task: ``"classification"``.
        baseline_run_id: run id of a logged baseline evaluation; with it the metrics include the
            agreement, the four ratios, the OCS and the class-level impact.
        device: ``"cpu"`` (default) or ``"cuda[:N]"``.
        batch_size: samples per batch for latency, CPU, RAM and energy (paper: 1).
        eval_batch_size: samples per batch for the accuracy pass.
        threads: torch threads during the runtime measurement.
        isolate: measure latency, CPU, RAM and energy in a fresh process (default True).
        latency_budget_s: seconds of timed calls at most (default 10).
        latency_target_ci_rel: stop timing once the 95% CI of the median is within this fraction.
        warmup_s: seconds of untimed warm-up calls.
        idle_s: seconds of idle power measured before the energy window.
        class_names: class names, index = label (for the confusion matrix and impact tables).
        progress: show progress bars.
        score_at_chance: compute ratios and OCS even when a model's top-1 is not above chance
            (see :mod:`netzip_mlflow.analysis.chance`; default False: withheld, tagged why).
        tags: extra MLflow tags; ``study``, ``technique`` and ``recipe`` set the ``netzip.*`` tags
            the leaderboard filters on.
    """

    input_shape: tuple[int, ...]
    task: str = "classification"
    baseline_run_id: str | None = None
    device: str = "cpu"
    batch_size: int = 1
    eval_batch_size: int = 256
    threads: int = 1
    isolate: bool = True
    latency_budget_s: float | None = None
    latency_target_ci_rel: float | None = None
    warmup_s: float | None = None
    idle_s: float = 1.0
    class_names: tuple[str, ...] | None = None
    progress: bool = False
    score_at_chance: bool = False
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None) -> PluginConfig:
        """Validate an ``evaluator_config`` dict; errors name the key and the fix."""
        config = dict(config or {})
        tags = {TAG_KEYS[k]: str(config.pop(k)) for k in list(config) if k in TAG_KEYS}
        for key in IGNORED_KEYS:
            config.pop(key, None)
        known = set(cls.__dataclass_fields__) - {"tags"}
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
        shape = config.pop("input_shape")
        if (
            not isinstance(shape, (list, tuple))
            or not shape
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise ConfigError(
                "evaluator_config.input_shape", f"{shape!r} is not a list of positive integers",
                "e.g. [3, 32, 32] for (C, H, W)",
            )
        if config.get("class_names") is not None:
            config["class_names"] = tuple(str(n) for n in config["class_names"])
        return cls(input_shape=tuple(int(d) for d in shape), tags=tuple(sorted(tags.items())), **config)

    def evaluation_config(self) -> Any:
        """The :class:`netzip_mlflow.evaluation.settings.EvaluationConfig` for these settings."""
        from netzip_mlflow.analysis.ratios import RatioConfig
        from netzip_mlflow.evaluation.latency import LatencySettings
        from netzip_mlflow.evaluation.settings import EvaluationConfig

        latency = {
            name: value
            for name, value in (
                ("budget_s", self.latency_budget_s),
                ("target_ci_rel", self.latency_target_ci_rel),
                ("warmup_s", self.warmup_s),
            )
            if value is not None
        }
        return EvaluationConfig(
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            threads=self.threads,
            isolate=bool(self.isolate),
            device=self.device,
            latency=LatencySettings(**latency),
            idle_s=self.idle_s,
            class_names=self.class_names,
            progress=bool(self.progress),
            ratios=RatioConfig(score_at_chance=bool(self.score_at_chance)),
        )


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
                module, data, task=config.task, config=config.evaluation_config(),
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
