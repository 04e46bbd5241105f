"""Objectives, constraints (Optuna's <= 0 convention) and "best" over feasible trials only."""

from __future__ import annotations

import itertools
import math

import pytest

from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.errors import MeasurementError
from netzip_mlflow.search.objective import best_indices, constraints, is_feasible, objective_values


def _search(**search):
    raw = {"study": "s", "data": {"builtin": "digits"}, "model": {"arch": "tiny_cnn"},
           "search": {"recipes": [{"name": "q", "technique": "ptq"}], **search}}
    return validate_study(raw).search


def test_constraints_are_bounds_with_the_accuracy_drop_from_the_baseline() -> None:
    s = _search(constraints={"max_accuracy_drop": 0.01, "max": {"speed/macs": 100.0}, "min": {"ocs": 2.0}})
    bounds = constraints(s, {"accuracy/top1": 0.97}, "accuracy/top1")
    assert [b.label for b in bounds] == ["accuracy/top1>=0.96", "speed/macs<=100", "ocs>=2"]
    metrics = {"accuracy/top1": 0.955, "speed/macs": 80.0, "ocs": 3.0}
    values = [b.value(metrics) for b in bounds]
    assert values == pytest.approx([0.005, -20.0, -1.0])
    assert not is_feasible(values)
    assert is_feasible([b.value({**metrics, "accuracy/top1": 0.96}) for b in bounds])
    assert math.isinf(bounds[1].value({}))  # not measured: broken


def test_accuracy_drop_needs_the_baseline_metric() -> None:
    with pytest.raises(MeasurementError, match="accuracy/top1"):
        constraints(_search(constraints={"max_accuracy_drop": 0.01}), {}, "accuracy/top1")


def test_objective_values_in_order_and_missing_metric_is_an_error() -> None:
    s = _search(objective=["accuracy/top1", "speed/chats"])
    assert objective_values(s, {"speed/chats": 5.0, "accuracy/top1": 0.9}) == [0.9, 5.0]
    with pytest.raises(MeasurementError, match="speed/chats"):
        objective_values(s, {"accuracy/top1": 0.9})


def test_single_objective_best_is_the_best_feasible() -> None:
    values = [[0.99], [0.95], [0.97], [0.97]]
    assert best_indices(values, [False, True, True, True], ["maximize"]) == [2]  # 0 is infeasible; tie -> first
    assert best_indices(values, [True] * 4, ["minimize"]) == [1]
    assert best_indices(values, [False] * 4, ["maximize"]) == []


def test_pareto_front_matches_brute_force_and_skips_infeasible() -> None:
    values = [[0.9, 10.0], [0.95, 20.0], [0.85, 5.0], [0.9, 12.0], [0.99, 30.0], [0.96, 25.0], [0.80, 6.0]]
    feasible = [True, True, True, True, False, True, True]
    got = best_indices(values, feasible, ["maximize", "minimize"])

    def dominated(i):
        return any(
            values[j][0] >= values[i][0] and values[j][1] <= values[i][1] and values[j] != values[i]
            for j in range(len(values)) if feasible[j] and j != i
        )

    expected = [i for i in range(len(values)) if feasible[i] and not dominated(i)]
    assert got == expected == [0, 1, 2, 5]
    for i, j in itertools.combinations(got, 2):  # no member dominates another
        assert not (values[i][0] >= values[j][0] and values[i][1] <= values[j][1])
