"""Getting or creating an MLflow experiment, safe against concurrent studies on one SQLite store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mlflow.tracking import MlflowClient

from netzip_mlflow.errors import TrackingError
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking.uri import mask_credentials


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (POSIX ``flock``; no lock elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: rely on the retries
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, or ``None`` for other stores."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def store_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient``; for a ``sqlite:///`` store, built under a cross-process file lock.

    Building the client builds the store, and MLflow creates or upgrades a SQLite store's tables
    then; several processes doing that at once race in the schema migrations ('Online migration
    expected to match one row', '_alembic_tmp_... already exists'). Serialising that first access
    makes the others find the tables ready. Other stores are not locked.
    """
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    with _file_lock(db.with_name(db.name + ".netzip-lock")):
        return MlflowClient(uri)


def ensure_experiment(name: str, client: MlflowClient | None = None, attempts: int = 8) -> str:
    """The id of experiment ``name``, created if needed.

    A new experiment gets the tag ``mlflow.experimentKind = custom_model_development``, so MLflow 3's
    UI opens it on its runs (model-training) view instead of the GenAI overview; an existing
    experiment is left as it is (it is the user's).

    Two studies starting together may both try to create it (one loses the race: the name already
    exists) or find SQLite locked: those are retried with jittered back-off. Any other failure (for
    example a tracking server that cannot be reached, after MLflow's own bounded HTTP retries, see
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT``) raises
    :class:`TrackingError` at once, saying where tracking points.
    """
    def get_or_create() -> str:
        nonlocal client
        client = client or store_client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id
        return client.create_experiment(name, tags={keys.EXPERIMENT_KIND_TAG: keys.EXPERIMENT_KIND})

    try:
        return retry_locked(get_or_create, attempts=attempts)
    except Exception as exc:  # noqa: BLE001 - MlflowException, or sqlalchemy/requests errors let through
        last: Exception | None = exc
    first_line = str(last).strip().splitlines()[0][:300] if last and str(last).strip() else type(last).__name__
    import mlflow

    where = client.tracking_uri if client is not None else mlflow.get_tracking_uri()
    raise TrackingError(
        f"cannot get or create experiment {name!r} at {mask_credentials(where)} ({first_line}); "
        "check --tracking-uri / MLFLOW_TRACKING_URI and that the tracking server or database is reachable"
    )


UI_WORKFLOW = "machine_learning"
"""MLflow 3's UI workflow ("Model training") that shows an experiment's runs table."""


def experiment_link(experiment_id: str) -> str:
    """The MLflow UI path (after ``http://host:port/``) of an experiment's runs table.

    MLflow 3.17's UI picks the experiment page from a global "GenAI | Model training" switch (URL
    parameter ``workflowType``, else the browser's last choice, else GenAI) rather than from the
    ``mlflow.experimentKind`` tag, so a bare ``#/experiments/<id>`` opens the GenAI overview in a
    fresh browser; this link opens the runs table (and the switch stays on "Model training").
    """
    return f"#/experiments/{experiment_id}/runs?workflowType={UI_WORKFLOW}"
