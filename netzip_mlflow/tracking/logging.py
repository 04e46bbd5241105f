"""Logging an evaluation report to MLflow: metrics once, params, tags and artifacts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from netzip_mlflow.evaluation.report import EvaluationReport
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.keys import CONFUSION_ARTIFACT, IMPACT_FOLDER, OPS_ARTIFACT, PREDICTIONS_ARTIFACT

MLFLOW_BATCH = 100  # MLflow accepts at most 1000 metrics / 100 params per log_batch call


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def write_artifacts(report: EvaluationReport, root: Path, confusion: bool = False) -> list[str]:
    """Write the report's artifact files under ``root``; returns their paths relative to it.

    Always: the per-layer ops table (:data:`OPS_ARTIFACT`) and the predictions (``.npz`` of integer
    arrays, read back without pickle). With ``confusion``: the model's own row-normalised confusion
    matrix (:data:`CONFUSION_ARTIFACT`). With a baseline: the class-level impact tables and figures.
    """
    root = Path(root)
    (root / OPS_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
    report.ops.write_csv(root / OPS_ARTIFACT)
    pred = report.predictions
    if pred is not None:  # detection reports have no per-sample class predictions
        (root / PREDICTIONS_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / PREDICTIONS_ARTIFACT, labels=pred.labels, topk=pred.topk, num_classes=pred.num_classes)
    for name, table in report.tables.items():  # e.g. detection's per-class AP
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(root / f"{name}.csv", index=False)
    if confusion and pred is not None:
        plot_confusion_matrix(report, root / CONFUSION_ARTIFACT)
    if report.impact is not None:
        _write_impact(report, root / IMPACT_FOLDER)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def log_report(
    report: EvaluationReport,
    run_id: str | None = None,
    client: MlflowClient | None = None,
    *,
    log_metrics: bool = True,
    model_id: str | None = None,
    dataset_name: str | None = None,
    dataset_digest: str | None = None,
    confusion: bool = False,
) -> str:
    """Log ``report`` to ``run_id`` (default: the active run, started if there is none).

    Metrics are logged in one batch each, so none is duplicated; with ``model_id`` (and the dataset's
    name and digest) each metric is also linked to that MLflow LoggedModel, which makes it appear in
    the model's page of the MLflow "Models" view. ``log_metrics=False`` logs params, tags and
    artifacts only (for callers, such as ``mlflow.models.evaluate``, that log the metrics
    themselves). Artifacts: see :func:`write_artifacts`.
    """
    client = client or MlflowClient()
    if run_id is None:
        run_id = (mlflow.active_run() or start_run()).info.run_id
    if log_metrics:
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, 0, model_id=model_id, dataset_name=dataset_name,
                   dataset_digest=dataset_digest, run_id=run_id)
            for k, v in sorted(report.metrics.items())
        ]
        for chunk in _chunks(metrics, 1000):
            client.log_batch(run_id, metrics=chunk)
    params = [Param(k, str(v)) for k, v in sorted(report.params.items())]
    tags = [RunTag(k, str(v)) for k, v in sorted(report.tags.items())]
    for chunk in _chunks(params, MLFLOW_BATCH):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(tags, MLFLOW_BATCH):
        client.log_batch(run_id, tags=chunk)
    with tempfile.TemporaryDirectory() as tmp:
        write_artifacts(report, Path(tmp), confusion=confusion)
        client.log_artifacts(run_id, tmp)
    report.run_id = run_id
    return run_id


def plot_confusion_matrix(report: EvaluationReport, path: Path) -> Path:
    """The evaluated model's row-normalised confusion matrix (rows: true class, sum 1) as a PNG."""
    from matplotlib.figure import Figure

    from netzip_mlflow.analysis.class_impact import confusion_matrix
    from netzip_mlflow.analysis.class_impact_report import ANNOTATE_MAX_CLASSES, normalized_confusion

    pred = report.predictions
    n = pred.num_classes
    names = report.class_names if len(report.class_names) == n else [str(i) for i in range(n)]
    matrix = normalized_confusion(confusion_matrix(pred.labels.astype(np.int64), pred.top1.astype(np.int64), n))
    panel = max(0.45 * n, 4.5) if n <= ANNOTATE_MAX_CLASSES else min(max(0.13 * n, 7.0), 14.0)
    font = min(max(0.6 * 72.0 * panel / n, 4.0), 9.0)
    fig = Figure(figsize=(panel + 1.6, panel + 0.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels=names, fontsize=font)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    if n <= ANNOTATE_MAX_CLASSES:
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=min(font, 8.0),
                    color="white" if value > 0.5 else "black")
    top1 = float(np.mean(pred.top1 == pred.labels)) if pred.labels.size else float("nan")
    ax.set_title(f"Confusion matrix, each row sums to 1 (top-1 {top1:.1%})")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Fraction of the true class")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _write_impact(report: EvaluationReport, folder: Path) -> None:
    from netzip_mlflow.analysis.class_impact_report import (
        plot_confusion_matrices,
        plot_exemplar_grid,
        write_exemplars_csv,
        write_per_class_csv,
    )

    folder.mkdir(parents=True, exist_ok=True)
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
