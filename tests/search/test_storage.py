"""Where a search's Optuna study lives, and that no password leaks into the error that says so."""

from __future__ import annotations

import pytest

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.search.storage import resolve_storage


def test_the_optuna_file_sits_beside_a_sqlite_store(tmp_path):
    assert resolve_storage(None, f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"


def test_an_explicit_storage_wins():
    assert resolve_storage("postgresql://u@db/optuna", "http://server:5000") == "postgresql://u@db/optuna"


def test_a_server_store_needs_an_explicit_storage_and_its_password_is_masked():
    with pytest.raises(ConfigError, match=r"search\.storage") as caught:
        resolve_storage(None, "postgresql://alice:s3cret@db-host:5432/mlflow")
    assert "s3cret" not in str(caught.value) and "alice:***@db-host:5432" in str(caught.value)
