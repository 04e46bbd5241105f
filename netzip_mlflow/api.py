"""``nz.evaluate``: the measurement library composed with the MLflow adapter.

The measuring is done by :func:`netzip_mlflow.evaluation.evaluator.measure` (pure: no MLflow); a
baseline given as a run id is read by :func:`netzip_mlflow.tracking.runs.resolve_baseline`; the
report is logged by :func:`netzip_mlflow.tracking.logging.log_report`. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from netzip_mlflow.evaluation.evaluator import measure
from netzip_mlflow.evaluation.report import BaselineFacts, EvaluationReport
from netzip_mlflow.evaluation.settings import EvaluationConfig

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    data: Iterable[Any] | Any,
    task: str = "classification",
    config: EvaluationConfig | None = None,
    baseline: EvaluationReport | BaselineFacts | str | None = None,
    log_to_mlflow: bool = True,
) -> EvaluationReport:
    """Measure ``model`` on ``data`` with every NetZIP metric (and log the report to MLflow).

    Args:
        model: a PyTorch classifier returning (batch, classes) logits, or for ``"detection"`` a
            torchvision-style detector (eval forward: one boxes/labels/scores dict per image). It is
            not modified.
        data: a ``DataLoader`` / iterable of ``(inputs, targets)`` batches, or a ``Dataset``
            (detection: targets are lists of boxes/labels dicts, see ``netzip_mlflow.data.detection``).
        task: ``"classification"`` or ``"detection"`` (see :mod:`netzip_mlflow.evaluation.tasks`).
        config: measurement settings (defaults: batch 1, 1 thread, isolated process, CPU).
        baseline: ``None``, another :class:`EvaluationReport`, its :class:`BaselineFacts`, or the
            run id of a logged baseline; with a baseline the report gets agreement, ratios, OCS and
            class-level impact.
        log_to_mlflow: log the report to the active MLflow run (one is started if none is active).
    """
    if isinstance(baseline, str):
        from netzip_mlflow.tracking.runs import resolve_baseline

        baseline = resolve_baseline(baseline)
    report = measure(model, data, task, config, baseline)
    if log_to_mlflow:
        from netzip_mlflow.tracking.logging import log_report

        log_report(report)
    return report
