"""Getting or creating an MLflow experiment, safe against concurrent studies on one SQLite store."""

from __future__ import annotations

import random
import time

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from netzip_mlflow.errors import TrackingError


def ensure_experiment(name: str, client: MlflowClient | None = None, attempts: int = 8) -> str:
    """The id of experiment ``name``, created if needed.

    Two studies starting together may both try to create it, or find SQLite locked: retry with
    jittered back-off, then raise :class:`TrackingError` saying where tracking points.
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
        except MlflowException as exc:  # created by another process meanwhile, or database locked
            last = exc
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise TrackingError(
        f"cannot get or create experiment {name!r} at {client.tracking_uri}: {last}; "
        "check MLFLOW_TRACKING_URI and that the tracking server or database is reachable"
    )
