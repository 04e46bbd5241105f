"""netzip-mlflow: compare neural-network compression techniques with the NetZIP metrics in MLflow.

The public API (docs/architecture.md, "Layers")::

    import netzip_mlflow as nz
    report = nz.evaluate(model, data, config=nz.EvaluationConfig(), baseline=None)
    result = nz.compress(model, "ptq", params={}, data=loader)
    ops = nz.count_ops(model, example_inputs)
    score = nz.ocs(performance, speedup, compression, efficiency)
    impact = nz.class_impact(labels, baseline_pred, compressed_pred)
    board = nz.leaderboard("netzip-quickstart")
    study = nz.run_study("recipes/quickstart.yaml")
    found = nz.search("recipes/search_quickstart.yaml")        # needs the [search] extra (Optuna)
    version = nz.promote("netzip-quickstart", "quickstart", model_name="mnist-resnet18")

Names are imported lazily so that MLflow's plugin discovery (which imports this package to read the
run-context provider) does not pay for torch. ``python -m netzip_mlflow`` runs the ``netzip`` CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "evaluate": "netzip_mlflow.api",
    "EvaluationReport": "netzip_mlflow.evaluation.report",
    "BaselineFacts": "netzip_mlflow.evaluation.report",
    "EvaluationConfig": "netzip_mlflow.evaluation.settings",
    "LatencySettings": "netzip_mlflow.evaluation.latency",
    "compress": "netzip_mlflow.compression.registry",
    "CompressionResult": "netzip_mlflow.compression.registry",
    "list_techniques": "netzip_mlflow.compression.registry",
    "count_ops": "netzip_mlflow.evaluation.ops",
    "OpsReport": "netzip_mlflow.evaluation.ops",
    "model_size": "netzip_mlflow.evaluation.size",
    "ocs": "netzip_mlflow.analysis.ratios",
    "compute_ratios": "netzip_mlflow.analysis.ratios",
    "RatioConfig": "netzip_mlflow.analysis.ratios",
    "class_impact": "netzip_mlflow.analysis.class_impact",
    "ClassImpact": "netzip_mlflow.analysis.class_impact",
    "class_impact_population": "netzip_mlflow.analysis.class_impact",
    "leaderboard": "netzip_mlflow.analysis.leaderboard",
    "run_study": "netzip_mlflow.study.runner",
    "StudyResult": "netzip_mlflow.study.runner",
    "search": "netzip_mlflow.search.runner",
    "SearchResult": "netzip_mlflow.search.runner",
    "promote": "netzip_mlflow.tracking.promote",
    "load_builtin": "netzip_mlflow.data.builtin",
    "load_image_folder": "netzip_mlflow.data.folder",
    "build_model": "netzip_mlflow.models.zoo",
}
_ERRORS = ("NetzipError", "ConfigError", "DataError", "ModelError", "CompressionError", "MeasurementError", "TrackingError")

__all__ = sorted([*_API, *_ERRORS])
__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)

# Importing the package changes nothing in the process (no environment variable, no MLflow setting):
# MLflow imports it through its plugin entry points whenever mlflow itself is imported.


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("netzip_mlflow.errors"), name)
    raise AttributeError(f"module 'netzip_mlflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
