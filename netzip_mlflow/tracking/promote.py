"""Promoting the best compressed run of a study into the MLflow Model Registry (``netzip promote``).

The candidates are the study's FINISHED ``compressed`` runs (a search's trial runs included) that
logged a model and meet every ``--where`` condition (:mod:`netzip_mlflow.analysis.where`, parsed
without ``eval``). The best by ``--by`` (its direction from the metric key) is registered with
``mlflow.register_model``; the alias is set on the new version, and the version is tagged with every
NetZIP metric the run logged, the baseline's run id, the study, recipe, technique and the ranking,
so the registry page says why it won. Works on any store with a registry (the embedded SQLite
store, an ``mlflow server``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.leaderboard import _compressed_runs, _resolve_experiments
from netzip_mlflow.analysis.where import Condition, matches, parse_where
from netzip_mlflow.errors import ConfigError, TrackingError
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.model_logging import MODEL_NAME


@dataclass(frozen=True)
class Promotion:
    """The registered version and the run it came from."""

    model_name: str
    version: str
    alias: str | None
    run_id: str
    by: str
    value: float


def _candidates(runs: list[Run], conditions: list[Condition], by: str) -> list[Run]:
    out = []
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        metrics = run.data.metrics
        value = metrics.get(by)
        if value is None or not math.isfinite(value) or not matches(conditions, metrics):
            continue
        out.append(run)
    return out


def _has_model(client: MlflowClient, run: Run) -> bool:
    """Whether ``run`` logged its model (an MLflow 3 logged model named ``model``)."""
    found = retry_locked(
        client.search_logged_models, experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' and name = '{MODEL_NAME}'", max_results=1,
    )
    return bool(found)


def version_tags(run: Run, by: str, where: str | None) -> dict[str, str]:
    """The tags a promoted version gets: NetZIP metrics, baseline run, study, recipe, ranking."""
    tags = {k: repr(float(v)) for k, v in run.data.metrics.items() if k in keys.METRICS}
    source = run.data.tags
    for tag in (keys.TAG_BASELINE_RUN, keys.TAG_STUDY, keys.TAG_RECIPE, keys.TAG_TECHNIQUE):
        if tag in source:
            tags[tag] = source[tag]
    tags[keys.TAG_SOURCE_RUN] = run.info.run_id
    tags[keys.TAG_PROMOTED_BY] = by
    if where:
        tags[keys.TAG_PROMOTED_WHERE] = where
    return tags


def promote(
    experiment: str,
    study: str,
    model_name: str,
    by: str = keys.OCS,
    where: str | None = None,
    alias: str | None = "champion",
) -> Promotion:
    """Register the best compressed run of ``study`` as a new version of ``model_name``.

    Args:
        experiment: the MLflow experiment name (e.g. ``netzip-quickstart``).
        study: the study name (tag ``netzip.study``).
        model_name: the registered model (created if new).
        by: the metric key to rank by; higher is better for ``ocs``/accuracies, lower for costs.
        where: conditions every candidate must meet, e.g. ``"accuracy/top1 >= 0.95 and speed/chats <= 2e9"``.
        alias: set on the new version (``None``: no alias).

    Uses the current tracking URI (``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``) and its registry.

    Raises:
        ConfigError: ``by`` or ``where`` names an unknown metric, or ``where`` is malformed.
        TrackingError: no run meets the conditions (one line saying how many were looked at), or
            the experiment does not exist.
    """
    if by not in keys.METRICS:
        raise ConfigError("--by", f"unknown metric key {by!r}", f"use one of {', '.join(sorted(keys.METRICS))}")
    conditions = parse_where(where) if where else []
    client = MlflowClient()
    runs = _compressed_runs(client, _resolve_experiments(client, experiment), study, None, None, False)
    candidates = [r for r in _candidates(runs, conditions, by) if _has_model(client, r)]
    if not candidates:
        shown = f" meets {where!r}" if where else f" logged {by} and a model"
        raise TrackingError(
            f"no compressed run of study {study!r} in experiment {experiment!r}{shown} "
            f"({len(runs)} finished compressed runs looked at); relax --where or check --study"
        )
    sign = 1.0 if keys.higher_is_better(by) else -1.0
    best = max(candidates, key=lambda r: (sign * r.data.metrics[by], -(r.info.start_time or 0)))
    version: ModelVersion = retry_locked(
        mlflow.register_model, f"runs:/{best.info.run_id}/{MODEL_NAME}", model_name,
        tags=version_tags(best, by, where),
    )
    if alias:
        retry_locked(client.set_registered_model_alias, model_name, alias, version.version)
    return Promotion(model_name, str(version.version), alias, best.info.run_id, by, float(best.data.metrics[by]))
