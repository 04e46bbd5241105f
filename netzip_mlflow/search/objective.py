"""Objectives, constraints and "best" of a search, from a trial's logged NetZIP metrics.

Constraint values follow Optuna's convention: a value <= 0 is met, > 0 is violated by that much (in
the metric's unit). "Best" only ever considers feasible trials: for one objective the feasible
trial with the best value, for several the feasible Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from netzip_mlflow.config.schema import SearchSpec
from netzip_mlflow.errors import MeasurementError
from netzip_mlflow.tracking import keys


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` (``upper``) or ``metric >= bound``; ``label`` e.g. ``speed/macs<=2e+08``."""

    metric: str
    bound: float
    upper: bool

    @property
    def label(self) -> str:
        return f"{self.metric}{'<=' if self.upper else '>='}{self.bound:g}"

    def value(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` break it (<= 0: met); +inf when the metric was not measured."""
        measured = metrics.get(self.metric)
        if measured is None or not math.isfinite(measured):
            return math.inf
        return measured - self.bound if self.upper else self.bound - measured


def constraints(search: SearchSpec, baseline: Mapping[str, float], performance: str) -> list[Constraint]:
    """The search's constraints as bounds; ``max_accuracy_drop`` becomes ``performance >= base - drop``.

    Raises:
        MeasurementError: the baseline has no ``performance`` metric to measure a drop from.
    """
    c = search.constraints
    out: list[Constraint] = []
    if c.max_accuracy_drop is not None:
        base = baseline.get(performance)
        if base is None:
            raise MeasurementError(
                f"search.constraints.max_accuracy_drop needs the baseline's {performance}, which it did not log"
            )
        out.append(Constraint(performance, base - c.max_accuracy_drop, upper=False))
    out += [Constraint(k, v, upper=True) for k, v in c.max.items()]
    out += [Constraint(k, v, upper=False) for k, v in c.min.items()]
    return out


def objective_values(search: SearchSpec, metrics: Mapping[str, float]) -> list[float]:
    """The objective metrics of one trial, in order.

    Raises:
        MeasurementError: an objective metric was not logged (or is not finite) for this trial.
    """
    values = []
    for objective in search.objective:
        value = metrics.get(objective.metric)
        if value is None or not math.isfinite(value):
            raise MeasurementError(
                f"objective metric {objective.metric} was not measured for this trial "
                f"(got {value!r}); pick a metric the evaluator logs"
            )
        values.append(float(value))
    return values


def is_feasible(values: Sequence[float]) -> bool:
    """All constraint values <= 0."""
    return all(v <= 0 for v in values)


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    better_or_equal = all(s * x >= s * y for x, y, s in zip(a, b, signs))
    return better_or_equal and any(s * x > s * y for x, y, s in zip(a, b, signs))


def best_indices(values: Sequence[Sequence[float]], feasible: Sequence[bool], directions: Sequence[str]) -> list[int]:
    """Indices of the best feasible trials: the single best (ties: the first) or the Pareto front.

    Args:
        values: objective values per trial.
        feasible: whether each trial met every constraint.
        directions: ``"maximize"``/``"minimize"`` per objective.
    """
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    candidates = [i for i, ok in enumerate(feasible) if ok]
    if not candidates:
        return []
    if len(signs) == 1:
        return [max(candidates, key=lambda i: (signs[0] * values[i][0], -i))]
    return [i for i in candidates if not any(_dominates(values[j], values[i], signs) for j in candidates if j != i)]


def performance_metric(task: str, configured: str, explicitly_set: bool) -> str:
    """The metric ``max_accuracy_drop`` applies to: the performance ratio's (mAP@0.5 by default for detection)."""
    if task == "detection" and not explicitly_set:
        return keys.MAP50
    return configured
