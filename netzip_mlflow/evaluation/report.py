"""What an evaluation returns (:class:`EvaluationReport`) and what a comparison needs from a baseline
(:class:`BaselineFacts`). Plain data: no MLflow, no measurement.

A baseline reaches the comparison either as another in-memory report (:meth:`BaselineFacts.of`) or
as facts read from a logged MLflow run by :func:`netzip_mlflow.tracking.runs.load_baseline`; the
measurement code sees only :class:`BaselineFacts` (docs/architecture.md, "Data flow").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from netzip_mlflow.analysis.class_impact import ClassImpact
from netzip_mlflow.evaluation.accuracy import Predictions
from netzip_mlflow.evaluation.ops import OpsReport
from netzip_mlflow.tracking import keys


@dataclass
class EvaluationReport:
    """Everything one evaluation measured.

    Attributes:
        metrics: contract metric key -> value (units in ``keys.METRICS``).
        tags: MLflow tags (energy meter, ratio metrics, missing ratios, hardware, ...).
        params: settings worth recording as MLflow params (batch size, threads, ...).
        predictions: labels and top-k predictions over the evaluation data (``None`` for detection).
        ops: per-layer MACs / CHATS.
        impact: class-level impact against the baseline (compressed models with a baseline).
        baseline_top1: the baseline's top-1 predictions on the same samples, when compared.
        exemplar_images: sample index -> image, for the first compression-identified exemplars.
        class_names: names of the classes, index = label.
        run_id: the MLflow run the report was logged to, if any (set by the tracking adapter).
        tables: name -> table logged as ``<name>.csv`` (detection: the per-class AP table).
    """

    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, Any]
    predictions: Predictions | None
    ops: OpsReport
    impact: ClassImpact | None = None
    baseline_top1: np.ndarray | None = None
    exemplar_images: dict[int, torch.Tensor] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    run_id: str | None = None
    tables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BaselineFacts:
    """What a comparison needs from the baseline: its metrics, predictions and hardware.

    Attributes:
        metrics: the baseline's contract metrics (units in ``keys.METRICS``).
        predictions: its predictions on the same samples (``None``: no agreement or class impact).
        hardware_id: its ``netzip.hw.id`` tag; ratios are refused across different hardware.
        run_id: the MLflow run it was logged to, if any (recorded as ``netzip.baseline_run_id``).
    """

    metrics: dict[str, float]
    predictions: Predictions | None
    hardware_id: str | None
    run_id: str | None

    @classmethod
    def of(cls, report: EvaluationReport) -> BaselineFacts:
        """The facts of an in-memory baseline report."""
        return cls(report.metrics, report.predictions, report.tags.get(keys.TAG_HW_ID), report.run_id)
