"""Suite-wide settings: no telemetry, a private MLflow store per test session."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
