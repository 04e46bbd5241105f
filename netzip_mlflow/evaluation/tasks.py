"""Task strategies: what differs between evaluating a classifier and a detector.

A :class:`TaskStrategy` supplies the accuracy pass of :func:`netzip_mlflow.evaluation.evaluator.measure`
(its metrics, predictions, a real input batch for the runtime measurement, extra params and tables);
everything else (ops, size, latency, energy, the baseline comparison) is shared. The built-in
strategies are ``classification`` (:mod:`netzip_mlflow.evaluation.classification`) and ``detection``
(:mod:`netzip_mlflow.evaluation.detection`); another task plugs in with :func:`register_task`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.accuracy import Predictions
from netzip_mlflow.evaluation.settings import EvaluationConfig


@dataclass
class AccuracyPass:
    """What a task's accuracy pass over the evaluation data found.

    Attributes:
        metrics: accuracy metric keys (``keys.METRICS``) -> value, fractions 0-1.
        first_inputs: the first batch of real inputs (the runtime sample is cut from it).
        samples: number of evaluated samples (images).
        class_names: names of the classes, index = label.
        predictions: per-sample class predictions (``None`` where the task has none: then no
            agreement and no class-level impact).
        batches: the batches as iterated (re-iterable), to gather exemplar images from.
        params: task-specific settings to record (``eval.*``).
        tables: name -> table (``pandas.DataFrame``) logged as ``<name>.csv``.
    """

    metrics: dict[str, float]
    first_inputs: torch.Tensor
    samples: int
    class_names: list[str]
    predictions: Predictions | None = None
    batches: Iterable[Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)


class TaskStrategy(Protocol):
    """One kind of model (classifier, detector, ...) as the evaluator sees it."""

    name: str

    def configure(self, config: EvaluationConfig) -> EvaluationConfig:
        """The configuration adjusted to the task (e.g. its default performance metric)."""

    def accuracy_pass(self, model: nn.Module, data: Any, config: EvaluationConfig) -> AccuracyPass:
        """Run ``model`` (already on ``config.device``, in eval mode) over ``data``."""


_STRATEGIES: dict[str, TaskStrategy] = {}


def register_task(strategy: TaskStrategy, *, replace: bool = False) -> None:
    """Make ``strategy`` available as ``task=strategy.name``.

    Raises:
        ConfigError: a task of that name exists and ``replace`` is False.
    """
    if strategy.name in _STRATEGIES and not replace:
        raise ConfigError("task", f"{strategy.name!r} is already registered", "pass replace=True to override it")
    _STRATEGIES[strategy.name] = strategy


def get_task(name: str) -> TaskStrategy:
    """The strategy registered as ``name``; :class:`ConfigError` (field ``task``) if there is none."""
    strategy = _STRATEGIES.get(name) if isinstance(name, str) else None
    if strategy is None:
        raise ConfigError("task", f"unknown task {name!r}", f"use one of {sorted(_STRATEGIES)}")
    return strategy


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(_STRATEGIES)
