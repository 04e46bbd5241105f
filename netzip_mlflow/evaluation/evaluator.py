"""The NetZIP measurement: every metric of the paper for one model on one dataset and machine.

:func:`measure` runs the task's accuracy pass over the data in this process (see
:mod:`netzip_mlflow.evaluation.tasks`), counts ops and size from the model itself, and measures
latency, CPU, RAM and energy on one real sample (in a fresh process by default). Against a baseline
(another report, or the :class:`~netzip_mlflow.evaluation.report.BaselineFacts` the tracking adapter
read from a logged run) it adds the agreement, the improvement ratios, the OCS and the class-level
impact. It returns an :class:`~netzip_mlflow.evaluation.report.EvaluationReport` and never touches
MLflow: ``nz.evaluate`` (:mod:`netzip_mlflow.api`) composes it with the tracking adapter.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from netzip_mlflow.analysis.chance import check_chance
from netzip_mlflow.analysis.class_impact import class_impact
from netzip_mlflow.analysis.ratios import compute_ratios
from netzip_mlflow.data.batches import Batch
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.accuracy import Predictions, agreement, model_input
from netzip_mlflow.evaluation.classification import ClassificationTask
from netzip_mlflow.evaluation.deployed import TORCH_RUNTIME, TORCH_THREAD_OPTION, DeployedModel
from netzip_mlflow.evaluation.detection import DetectionTask
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.evaluation.report import BaselineFacts, EvaluationReport
from netzip_mlflow.evaluation.runtime import RuntimeSettings, measure_runtime, measure_runtime_isolated
from netzip_mlflow.evaluation.settings import TASKS, EvaluationConfig
from netzip_mlflow.evaluation.size import model_size
from netzip_mlflow.evaluation.tasks import get_task, register_task, task_names
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.hardware import hardware_tags

log = logging.getLogger(__name__)

for _strategy in (ClassificationTask(), DetectionTask()):
    register_task(_strategy, replace=True)
if set(task_names()) != set(TASKS):  # pragma: no cover - a developer error caught at import
    raise ConfigError("task", f"registered tasks {task_names()} differ from settings.TASKS {list(TASKS)}")

__all__ = ["BaselineFacts", "EvaluationReport", "compare", "gather_images", "measure"]


def baseline_facts(baseline: EvaluationReport | BaselineFacts) -> BaselineFacts:
    """The facts of an in-memory baseline; a run id must be resolved by the tracking adapter first."""
    if isinstance(baseline, BaselineFacts):
        return baseline
    if isinstance(baseline, EvaluationReport):
        return BaselineFacts.of(baseline)
    if isinstance(baseline, str):
        raise ConfigError(
            "baseline", f"{baseline!r} is a run id; the measurement library does not read MLflow",
            "use nz.evaluate(..., baseline=RUN_ID), or netzip_mlflow.tracking.runs.load_baseline(RUN_ID)",
        )
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


def most_confident_first(exemplars: pd.DataFrame, predictions: Predictions | None) -> pd.DataFrame:
    """The exemplars ordered by the compressed model's confidence in its (changed) answer, highest first.

    Adds ``compressed_confidence`` (softmax probability of its top-1, fraction). A confident flip is
    the most informative one to look at: the compressed model is sure of an answer the baseline did
    not give. Ties (and predictions without confidences) keep the sample order.
    """
    if predictions is None or predictions.confidence is None or exemplars.empty:
        return exemplars
    conf = predictions.confidence[exemplars["index"].to_numpy(dtype=np.int64)]
    ordered = exemplars.assign(compressed_confidence=conf)
    return ordered.sort_values("compressed_confidence", ascending=False, kind="stable").reset_index(drop=True)


_WARNED: set[tuple[str | None, str]] = set()
"""(baseline run id, who is at chance) already warned about: a study warns once, not per recipe."""


def _chance_reason(report: EvaluationReport, facts: BaselineFacts, config: EvaluationConfig) -> str | None:
    """Why ratios would compare noise (baseline or compressed top-1 not above chance), or ``None``.

    Only for top-1 as the performance metric and unless ``config.ratios.score_at_chance``.
    """
    if config.ratios.score_at_chance or config.ratios.performance != keys.TOP1 or report.predictions is None:
        return None
    labels = report.predictions.labels
    reasons = []
    for who, metrics in (("baseline", facts.metrics), ("compressed model", report.metrics)):
        top1 = metrics.get(keys.TOP1)
        if top1 is None or not math.isfinite(top1):
            continue
        check = check_chance(top1, labels)
        if check.at_chance:
            reasons.append(check.describe(who))
    return "; ".join(reasons) or None


def compare(report: EvaluationReport, baseline: EvaluationReport | BaselineFacts, config: EvaluationConfig) -> None:
    """Add agreement, ratios, OCS and class-level impact against ``baseline`` to ``report`` in place."""
    facts = baseline_facts(baseline)
    hw = report.tags.get(keys.TAG_HW_ID)
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
    withheld = _chance_reason(report, facts, config)
    if withheld is not None:
        report.tags[keys.TAG_OCS_WITHHELD] = withheld
        report.tags[keys.TAG_MISSING_RATIOS] = "all (model at chance)"
        who = (facts.run_id, withheld.split(" top-1")[0])
        level = logging.WARNING if who not in _WARNED or facts.run_id is None else logging.INFO  # once per baseline
        _WARNED.add(who)
        log.log(level, "ratios and OCS withheld: %s (--score-at-chance computes them anyway)", withheld)
        return
    result = compute_ratios(facts.metrics, report.metrics, config.ratios)
    for name, value in result.ratios.items():
        report.tags[keys.ratio_metric_tag(name)] = result.metrics_used[name]
        if value is not None:
            report.metrics[keys.RATIO_KEYS[name]] = value
    if not math.isnan(result.ocs):
        report.metrics[keys.OCS] = result.ocs
    report.tags[keys.TAG_MISSING_RATIOS] = ",".join(result.missing) or "none"


def runtime_tags(model: nn.Module) -> dict[str, str]:
    """``netzip.runtime`` (torch, onnxruntime, openvino), the option that fixed its threads and,
    for a deployment runtime, its version as ``netzip.sw.<runtime>`` (torch's is a context tag)."""
    if not isinstance(model, DeployedModel):
        return {keys.TAG_RUNTIME: TORCH_RUNTIME, keys.TAG_RUNTIME_THREAD_OPTION: TORCH_THREAD_OPTION}
    name, version, option = model.runtime_facts()
    return {keys.TAG_RUNTIME: name, keys.TAG_RUNTIME_THREAD_OPTION: option, keys.TAG_SW_PREFIX + name: version}


def measure(
    model: nn.Module,
    data: Iterable[Batch] | Dataset | Any,
    task: str = "classification",
    config: EvaluationConfig | None = None,
    baseline: EvaluationReport | BaselineFacts | None = None,
) -> EvaluationReport:
    """Measure ``model`` on ``data`` with every NetZIP metric; MLflow is not touched.

    Args:
        model: a PyTorch classifier returning (batch, classes) logits, or for ``"detection"`` a
            torchvision-style detector (eval forward: one boxes/labels/scores dict per image). It is
            moved to ``config.device`` and put in eval mode, otherwise not modified. A model
            exported by the ``onnx``/``openvino`` techniques (a
            :class:`~netzip_mlflow.evaluation.deployed.DeployedModel`) is measured through its
            runtime's session: accuracy and latency from the session, threads set by the runtime's
            own option, MACs of the source model, CHATS from the runtime graph's bit-widths, disk
            size of the files that ship.
        data: a ``DataLoader`` / iterable of ``(inputs, targets)`` batches, or a ``Dataset``
            (detection: targets are lists of boxes/labels dicts, see ``netzip_mlflow.data.detection``).
        task: a registered task strategy (``"classification"``, ``"detection"``).
        config: measurement settings (defaults: batch 1, 1 thread, isolated process, CPU).
        baseline: ``None``, another :class:`EvaluationReport`, or :class:`BaselineFacts`; with a
            baseline the report gets agreement, ratios, OCS and class-level impact.
    """
    strategy = get_task(task)
    config = strategy.configure(config or EvaluationConfig())
    model = model.to(config.device).eval()
    found = strategy.accuracy_pass(model, data, config)
    sample = _sample(found.first_inputs, config.batch_size, model, config.device)

    metrics = dict(found.metrics)
    deployed = isinstance(model, DeployedModel)
    ops = model.ops_report() if deployed else count_ops(model, sample[:1])
    metrics.update(ops.as_metrics())
    metrics.update((model.size_report() if deployed else model_size(model)).as_metrics())

    settings = RuntimeSettings(config.latency, config.threads, config.device, config.idle_s, config.power_log)
    measure_fn = measure_runtime_isolated if config.isolate else measure_runtime
    runtime = measure_fn(model, sample, settings)
    metrics.update(runtime.metrics)

    tags = {**hardware_tags(), **runtime.tags, **runtime_tags(model), keys.TAG_TASK: strategy.name}
    params = {
        "eval.batch_size": config.batch_size,
        "eval.threads": config.threads,
        "eval.device": config.device,
        "eval.isolated": config.isolate,
        "eval.samples": found.samples,
        "eval.latency_target_ci_rel": config.latency.target_ci_rel,
        "eval.latency_budget_s": config.latency.budget_s,
        "eval.input_shape": "x".join(str(d) for d in sample.shape[1:]),
        **found.params,
    }
    report = EvaluationReport(
        metrics, tags, params, found.predictions, ops, class_names=found.class_names, tables=dict(found.tables)
    )
    report.tags[keys.TAG_ROLE] = keys.ROLE_BASELINE if baseline is None else keys.ROLE_COMPRESSED
    if baseline is not None:
        compare(report, baseline, config)
        if report.impact is not None and len(report.impact.exemplars):
            ordered = most_confident_first(report.impact.exemplars, report.predictions)
            report.impact = dataclasses.replace(report.impact, exemplars=ordered)
        if report.impact is not None and len(report.impact.exemplars) and found.batches is not None:
            first = report.impact.exemplars["index"].head(EXEMPLAR_GRID)
            report.exemplar_images = gather_images(found.batches, first)
    return report
