"""Getting or creating an MLflow experiment, safe against concurrent studies on one SQLite store."""

from __future__ import annotations

import random
import time

from mlflow.tracking import MlflowClient

from netzip_mlflow.errors import TrackingError

_TRANSIENT = ("database is locked", "unique constraint", "already exists", "integrityerror", "deadlock")


def _transient(exc: Exception) -> bool:
    text = f"{exc} {exc.__cause__ or ''}".lower()
    return any(marker in text for marker in _TRANSIENT)


def ensure_experiment(name: str, client: MlflowClient | None = None, attempts: int = 8) -> str:
    """The id of experiment ``name``, created if needed.

    Two studies starting together may both try to create it (one loses the race: the name already
    exists) or find SQLite locked: those are retried with jittered back-off. Any other failure (for
    example a tracking server that cannot be reached, after MLflow's own bounded HTTP retries, see
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT``) raises
    :class:`TrackingError` at once, saying where tracking points.
    """
    client = client or MlflowClient()
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                return experiment.experiment_id
            return client.create_experiment(name)
        except Exception as exc:  # noqa: BLE001 - MlflowException, or sqlalchemy/requests errors let through
            last = exc
            if not _transient(exc):
                break
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    first_line = str(last).strip().splitlines()[0][:300] if last and str(last).strip() else type(last).__name__
    raise TrackingError(
        f"cannot get or create experiment {name!r} at {client.tracking_uri} ({first_line}); "
        "check --tracking-uri / MLFLOW_TRACKING_URI and that the tracking server or database is reachable"
    )
