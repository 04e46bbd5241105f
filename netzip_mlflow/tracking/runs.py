"""Reading what earlier runs logged: a baseline's metrics, predictions and hardware.

:func:`resolve_baseline` is the one place a baseline given as an MLflow run id becomes the
:class:`~netzip_mlflow.evaluation.report.BaselineFacts` the measurement library compares against.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from netzip_mlflow.errors import TrackingError
from netzip_mlflow.evaluation.accuracy import Predictions
from netzip_mlflow.evaluation.report import BaselineFacts, EvaluationReport
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.uri import mask_credentials

PREDICTIONS_ARTIFACT = keys.PREDICTIONS_ARTIFACT


def load_predictions(run_id: str, client: MlflowClient | None = None) -> Predictions | None:
    """The predictions a run logged, or ``None`` if it logged none. Read without pickle."""
    client = client or MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        with np.load(Path(path), allow_pickle=False) as npz:
            return Predictions(npz["labels"], npz["topk"], int(npz["num_classes"]))


def load_baseline(run_id: str, client: MlflowClient | None = None) -> BaselineFacts:
    """Metrics, predictions and hardware id of the baseline run ``run_id``."""
    client = client or MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"baseline run {run_id!r} was not found in {mask_credentials(client.tracking_uri)}; "
            "check the run id and MLFLOW_TRACKING_URI"
        ) from exc
    return BaselineFacts(
        metrics=dict(run.data.metrics),
        predictions=load_predictions(run_id, client),
        hardware_id=run.data.tags.get(keys.TAG_HW_ID),
        run_id=run_id,
    )


def resolve_baseline(
    baseline: EvaluationReport | BaselineFacts | str | None, client: MlflowClient | None = None
) -> EvaluationReport | BaselineFacts | None:
    """``baseline`` ready for :func:`netzip_mlflow.evaluation.evaluator.measure`: a run id is read
    from MLflow (:func:`load_baseline`); reports, facts and ``None`` pass through."""
    if isinstance(baseline, str):
        return load_baseline(baseline, client)
    return baseline

