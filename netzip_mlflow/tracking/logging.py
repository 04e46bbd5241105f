"""Logging an evaluation report to MLflow: metrics once, params, tags and artifacts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from netzip_mlflow.evaluation.evaluator import EvaluationReport

from netzip_mlflow.tracking.runs import PREDICTIONS_ARTIFACT
MLFLOW_BATCH = 100  # MLflow accepts at most 1000 metrics / 100 params per log_batch call


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_report(report: EvaluationReport, run_id: str | None = None, client: MlflowClient | None = None) -> str:
    """Log ``report`` to ``run_id`` (default: the active run, started if there is none).

    Metrics are logged in one batch each, so none is duplicated. Artifacts: the per-layer ops table,
    the predictions (``.npz`` of integer arrays, read back without pickle), and the class-level
    impact tables and figures when the report has a baseline.
    """
    client = client or MlflowClient()
    if run_id is None:
        run_id = (mlflow.active_run() or mlflow.start_run()).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in sorted(report.metrics.items())]
    params = [Param(k, str(v)) for k, v in sorted(report.params.items())]
    tags = [RunTag(k, str(v)) for k, v in sorted(report.tags.items())]
    for chunk in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks(params, MLFLOW_BATCH):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(tags, MLFLOW_BATCH):
        client.log_batch(run_id, tags=chunk)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ops").mkdir()
        report.ops.write_csv(root / "ops" / "per_layer.csv")
        pred = report.predictions
        if pred is not None:
            (root / "predictions").mkdir()
            np.savez_compressed(root / PREDICTIONS_ARTIFACT, labels=pred.labels, topk=pred.topk, num_classes=pred.num_classes)
        for name, table in report.tables.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(root / f"{name}.csv", index=False)
        if report.impact is not None:
            _write_impact(report, root / "class_impact")
        client.log_artifacts(run_id, str(root))
    report.run_id = run_id
    return run_id


def _write_impact(report: EvaluationReport, folder: Path) -> None:
    from netzip_mlflow.analysis.class_impact_report import (
        plot_confusion_matrices,
        plot_exemplar_grid,
        write_exemplars_csv,
        write_per_class_csv,
    )

    folder.mkdir()
    impact = report.impact
    write_per_class_csv(impact, folder / "per_class.csv")
    write_exemplars_csv(impact, folder / "exemplars.csv")
    plot_confusion_matrices(
        report.predictions.labels,
        report.baseline_top1,
        report.predictions.top1,
        report.class_names,
        folder / "confusion_matrices.png",
    )
    if report.exemplar_images:
        plot_exemplar_grid(report.exemplar_images, impact, report.class_names, folder / "exemplars.png")
