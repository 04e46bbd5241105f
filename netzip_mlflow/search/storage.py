"""Where a search's Optuna study lives: beside the MLflow tracking store, so a search resumes.

* ``sqlite:///DIR/mlflow.db`` (the embedded default): ``sqlite:///DIR/optuna.db``, a file next to
  it (Optuna's tables cannot share MLflow's database: both keep an ``alembic_version`` table).
* any other tracking store (an ``http://`` server, ``postgresql://``): give ``search.storage`` (or
  ``--storage``) an RDB URL every worker reaches, e.g. another database on the same PostgreSQL
  server: ``postgresql://user@db-host/optuna``.
"""

from __future__ import annotations

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking.experiments import sqlite_path
from netzip_mlflow.tracking.uri import mask_credentials

OPTUNA_FILE = "optuna.db"


def resolve_storage(explicit: str | None, tracking_uri: str) -> str:
    """The Optuna storage URL: ``explicit`` if given, else the file beside a SQLite tracking store.

    Raises:
        ConfigError: no storage given and the tracking store is not a ``sqlite:///`` file.
    """
    if explicit:
        return explicit
    db = sqlite_path(tracking_uri)
    if db is None:
        raise ConfigError(
            "search.storage",
            f"the tracking store {mask_credentials(tracking_uri)} is not a sqlite:/// file, so there is no "
            "place beside it for the search's Optuna study",
            "give search.storage (or --storage) an RDB URL every worker can reach, e.g. "
            "postgresql://user@db-host/optuna on the tracking server's PostgreSQL",
        )
    return f"sqlite:///{db.with_name(OPTUNA_FILE)}"

