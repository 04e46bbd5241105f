"""The NetZIP evaluator: every metric of the paper for one model on one dataset and machine.

``evaluate`` measures accuracy over the data in this process, counts ops and size from the model
itself, and measures latency, CPU, RAM and energy on one real sample (in a fresh process by default).
Against a baseline (another report or a logged MLflow run) it adds the agreement, the improvement
ratios, the OCS and the class-level impact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from netzip_mlflow.analysis.class_impact import ClassImpact, class_impact
from netzip_mlflow.analysis.ratios import compute_ratios, paired_ratios
from netzip_mlflow.data.batches import Batch, as_batches, first_batch
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.accuracy import Predictions, accuracy_metrics, agreement, model_input, predict
from netzip_mlflow.evaluation.ops import OpsReport, count_ops
from netzip_mlflow.evaluation.runtime import RuntimeResult, RuntimeSettings, run_measurement
from netzip_mlflow.evaluation.settings import TASKS, EvaluationConfig
from netzip_mlflow.evaluation.size import model_size
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.hardware import hardware_tags

log = logging.getLogger(__name__)


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
        run_id: the MLflow run the report was logged to, if any.
        tables: name -> table logged as ``<name>.csv`` (detection: the per-class AP table).
        model: the evaluated model (a later ``evaluate(..., baseline=report)`` times against it).
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
    model: nn.Module | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class BaselineFacts:
    """What a comparison needs from the baseline: its metrics, predictions and hardware."""

    metrics: dict[str, float]
    predictions: Predictions | None
    hardware_id: str | None
    run_id: str | None


def _baseline_facts(baseline: EvaluationReport | str) -> BaselineFacts:
    if isinstance(baseline, EvaluationReport):
        return BaselineFacts(
            baseline.metrics, baseline.predictions, baseline.tags.get("netzip.hw.id"), baseline.run_id
        )
    if isinstance(baseline, str):
        from netzip_mlflow.tracking.runs import load_baseline

        return load_baseline(baseline)
    raise ConfigError("baseline", f"expected None, a run id or an EvaluationReport, got {type(baseline).__name__}")


def _sample(inputs: torch.Tensor, batch_size: int, model: nn.Module, device: str) -> torch.Tensor:
    if inputs.shape[0] < batch_size:
        reps = math.ceil(batch_size / inputs.shape[0])
        inputs = inputs.repeat(reps, *([1] * (inputs.ndim - 1)))
    return model_input(inputs[:batch_size].clone(), model, device)


EXEMPLAR_GRID = 16


def gather_images(data: Iterable[Batch], indices: Iterable[int]) -> dict[int, torch.Tensor]:
    """The input images at ``indices`` (positions in iteration order), reading only as far as needed."""
    wanted = sorted(set(int(i) for i in indices))
    found: dict[int, torch.Tensor] = {}
    start = 0
    for inputs, _ in data:
        stop = start + inputs.shape[0]
        for index in wanted:
            if start <= index < stop:
                found[index] = inputs[index - start].detach().cpu().float().clone()
        start = stop
        if not wanted or start > wanted[-1]:
            break
    return found


def baseline_module(baseline: EvaluationReport | str | None, baseline_model: nn.Module | None) -> nn.Module | None:
    """The baseline model to time against: ``baseline_model``, else the one a baseline report holds.

    A baseline given only as a run id is not unpickled from the store behind the caller's back:
    pass ``baseline_model`` (a study passes its in-memory or logged baseline) to pair with it.
    """
    if baseline_model is not None:
        return baseline_model
    return baseline.model if isinstance(baseline, EvaluationReport) else None


def measure_model_runtime(
    model: nn.Module,
    sample: torch.Tensor,
    config: EvaluationConfig,
    baseline: nn.Module | None = None,
) -> RuntimeResult:
    """Runtime metrics of ``model`` on ``sample`` by ``config``, and the paired ratios against
    ``baseline`` (fed the same batch, cast to its own dtype) when pairing is on."""
    settings = RuntimeSettings(
        config.latency, config.threads, config.device, config.idle_s, config.power_log, config.paired_settings()
    )
    base_sample = None
    if baseline is not None and settings.paired is not None:
        baseline = baseline.to(config.device).eval()
        base_sample = model_input(sample.detach().float() if sample.is_floating_point() else sample, baseline, config.device)
    return run_measurement(model, sample, settings, config.isolate, baseline, base_sample)


def compare(report: EvaluationReport, baseline: EvaluationReport | str, config: EvaluationConfig) -> None:
    """Add agreement, ratios, OCS and class-level impact against ``baseline`` to ``report`` in place."""
    facts = _baseline_facts(baseline)
    hw = report.tags.get("netzip.hw.id")
    if facts.hardware_id and hw and facts.hardware_id != hw:
        report.tags[keys.TAG_MISSING_RATIOS] = "all (baseline measured on other hardware)"
        log.warning("baseline %s was measured on other hardware; ratios not computed", facts.run_id)
        return
    if facts.run_id:
        report.tags[keys.TAG_BASELINE_RUN] = facts.run_id
    if facts.predictions is not None and report.predictions is not None:
        report.metrics[keys.AGREEMENT] = agreement(report.predictions, facts.predictions)
        report.baseline_top1 = facts.predictions.top1
        report.impact = class_impact(
            report.predictions.labels,
            facts.predictions.top1,
            report.predictions.top1,
            class_names=report.class_names or None,
            num_classes=report.predictions.num_classes,
        )
        report.metrics.update(report.impact.as_metrics())
        report.tags[keys.TAG_CIE_METHOD] = report.impact.method
    result = compute_ratios(facts.metrics, report.metrics, config.ratios, paired=paired_ratios(report.metrics))
    for name, value in result.ratios.items():
        report.tags[keys.ratio_metric_tag(name)] = result.metrics_used[name]
        if value is not None:
            report.metrics[keys.RATIO_KEYS[name]] = value
    if not math.isnan(result.ocs):
        report.metrics[keys.OCS] = result.ocs
    report.tags[keys.TAG_MISSING_RATIOS] = ",".join(result.missing) or "none"


def evaluate(
    model: nn.Module,
    data: Iterable[Batch] | Dataset,
    task: str = "classification",
    config: EvaluationConfig | None = None,
    baseline: EvaluationReport | str | None = None,
    log_to_mlflow: bool = True,
    baseline_model: nn.Module | None = None,
) -> EvaluationReport:
    """Measure ``model`` on ``data`` with every NetZIP metric.

    Args:
        model: a PyTorch classifier returning (batch, classes) logits, or for ``"detection"`` a
            torchvision-style detector (eval forward: one boxes/labels/scores dict per image). It is
            not modified.
        data: a ``DataLoader`` / iterable of ``(inputs, targets)`` batches, or a ``Dataset``
            (detection: targets are lists of boxes/labels dicts, see ``netzip_mlflow.data.detection``).
        task: ``"classification"`` or ``"detection"`` (see ``netzip_mlflow.evaluation.detection``).
        config: measurement settings (defaults: batch 1, 1 thread, isolated process, CPU).
        baseline: ``None``, another :class:`EvaluationReport`, or the run id of a logged baseline;
            with a baseline the report gets agreement, ratios, OCS and class-level impact.
        log_to_mlflow: log the report to the active MLflow run (one is started if none is active).
        baseline_model: the baseline model to time ``model`` against interleaved
            (``config.paired``, default on); by default the model a baseline report holds. A
            baseline given as a run id without it is measured unpaired (tag ``netzip.paired``).
    """
    if task not in TASKS:
        raise ConfigError("task", f"unknown task {task!r}", f"use one of {list(TASKS)}")
    config = config or EvaluationConfig()
    if task == "detection":
        from netzip_mlflow.evaluation.detection import evaluate_detection

        return evaluate_detection(model, data, config, baseline, log_to_mlflow, baseline_model)
    batches = as_batches(data, config.eval_batch_size)
    model = model.to(config.device).eval()
    predictions = predict(model, batches, config.device, progress=config.progress)
    inputs, _ = first_batch(batches)
    sample = _sample(inputs, config.batch_size, model, config.device)

    metrics = accuracy_metrics(predictions)
    ops = count_ops(model, sample[:1])
    metrics.update(ops.as_metrics())
    metrics.update(model_size(model).as_metrics())

    pair_with = baseline_module(baseline, baseline_model) if baseline is not None else None
    runtime = measure_model_runtime(model, sample, config, pair_with)
    metrics.update(runtime.metrics)

    tags = {**hardware_tags(), **runtime.tags, keys.TAG_TASK: task}
    params = {
        "eval.batch_size": config.batch_size,
        "eval.threads": config.threads,
        "eval.device": config.device,
        "eval.isolated": config.isolate,
        "eval.paired": config.paired,
        "eval.samples": int(predictions.labels.size),
        "eval.latency_target_ci_rel": config.latency.target_ci_rel,
        "eval.latency_budget_s": config.latency.budget_s,
        "eval.input_shape": "x".join(str(d) for d in sample.shape[1:]),
    }
    names = list(config.class_names) if config.class_names else [str(i) for i in range(predictions.num_classes)]
    report = EvaluationReport(metrics, tags, params, predictions, ops, class_names=names, model=model)
    report.tags[keys.TAG_ROLE] = keys.ROLE_BASELINE if baseline is None else keys.ROLE_COMPRESSED
    if baseline is not None:
        compare(report, baseline, config)
        if report.impact is not None and len(report.impact.exemplars):
            first = report.impact.exemplars["index"].head(EXEMPLAR_GRID)
            report.exemplar_images = gather_images(batches, first)
    if log_to_mlflow:
        from netzip_mlflow.tracking.logging import log_report

        log_report(report)
    return report
