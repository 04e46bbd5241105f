"""Suite-wide settings: no telemetry, and every test in its own MLflow store and working directory.

Nothing the suite logs lands in the checkout: the session's default store is a temporary SQLite
database, and each test gets its own (created only if the test touches MLflow) and runs in its own
temporary working directory. A module fixture that sets up a shared store of its own (and restores
the previous URI afterwards) keeps it for its tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="netzip-tests-"))
SESSION_TRACKING_URI = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ["MLFLOW_TRACKING_URI"] = SESSION_TRACKING_URI


@pytest.fixture(autouse=True)
def own_tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private tracking store (``sqlite:///<tmp>/mlflow.db``) and working directory per test."""
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.chdir(tmp_path)
    shared = mlflow.get_tracking_uri()
    mine = shared == SESSION_TRACKING_URI  # else a module fixture's store is in use: keep it
    if mine:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        # the experiment chosen by an earlier test's set_experiment belongs to that test's store
        # (MLflow's set_experiment also exports it as MLFLOW_EXPERIMENT_ID)
        monkeypatch.setattr(fluent, "_active_experiment_id", None)
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    if mine:
        mlflow.set_tracking_uri(SESSION_TRACKING_URI)
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
