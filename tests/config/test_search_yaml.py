"""The study YAML's search: block: validated with errors that name the field."""

from __future__ import annotations

import copy

import pytest

from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.errors import ConfigError

BASE = {
    "study": "s",
    "data": {"builtin": "digits", "limit": 120},
    "model": {"arch": "tiny_cnn"},
    "search": {
        "recipes": [{
            "name": "prune_ptq",
            "steps": [
                {"technique": "prune_structured", "params": {
                    "amount": {"low": 0.2, "high": 0.6},
                    "importance": {"choices": ["l1", "l2"]},
                    "layer_policy": {"groups": "auto", "low": 0.1, "high": 1.0},
                    "finetune_epochs": 1,
                }},
                {"technique": "ptq", "params": {"calibration_batches": {"low": 1, "high": 4}}},
            ],
        }],
        "objective": ["accuracy/top1", "speed/chats"],
        "constraints": {"max_accuracy_drop": 0.01, "max": {"speed/macs": 2.0e8}},
        "n_trials": 3,
    },
}


def _with(path: tuple, value) -> dict:
    raw = copy.deepcopy(BASE)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


def test_a_valid_block_is_kept_with_its_objectives_and_directions() -> None:
    spec = validate_study(BASE)
    assert spec.recipes == [] and spec.search.n_trials == 3
    assert [(o.metric, o.resolved_direction) for o in spec.search.objective] == [
        ("accuracy/top1", "maximize"), ("speed/chats", "minimize")]
    assert spec.search.multi_objective
    assert spec.search.constraints.max == {"speed/macs": 2.0e8}


def test_objective_defaults_to_ocs_and_accepts_explicit_directions() -> None:
    raw = copy.deepcopy(BASE)
    del raw["search"]["objective"]
    assert [o.metric for o in validate_study(raw).search.objective] == ["ocs"]
    raw["search"]["objective"] = [{"metric": "speed/latency_ms", "direction": "maximize"}]
    assert validate_study(raw).search.objective[0].resolved_direction == "maximize"


STEP0 = ("search", "recipes", 0, "steps", 0, "params")
STEP1 = ("search", "recipes", 0, "steps", 1, "params")


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    ((*STEP0, "amount"), {"low": 0.2, "high": 1.5}, "search.recipes[0].steps[0].params.amount.high", "(0, 1)"),
    ((*STEP0, "amount"), {"low": 0.6, "high": 0.2}, "search.recipes[0].steps[0].params.amount", "below"),
    ((*STEP0, "amount"), {"low": 0.2, "high": 0.6, "spread": 1}, "search.recipes[0].steps[0].params.amount.spread", "unknown"),
    ((*STEP0, "importance"), {"choices": ["l1", "nope"]}, "search.recipes[0].steps[0].params.importance.choices[1]", "one of"),
    ((*STEP0, "importance"), {"low": 1, "high": 2}, "search.recipes[0].steps[0].params.importance", "numeric"),
    ((*STEP0, "bogus"), {"low": 1, "high": 2}, "search.recipes[0].steps[0].params.bogus", "unknown parameter"),
    ((*STEP0, "layer_policy"), {"groups": "auto", "low": 0.1, "high": 1.5}, "search.recipes[0].steps[0].params.layer_policy.high", "[0, 1]"),
    ((*STEP0, "layer_policy"), {"groups": []}, "search.recipes[0].steps[0].params.layer_policy.groups", "auto"),
    ((*STEP1, "calibration_batches"), {"low": 1}, "search.recipes[0].steps[1].params.calibration_batches.high", "missing"),
    ((*STEP1, "calibration_batches"), {"low": 0.5, "high": 4}, "search.recipes[0].steps[1].params.calibration_batches.low", "integer"),
    (("search", "objective"), "speed/nope", "search.objective[0].metric", "unknown metric key"),
    (("search", "objective"), ["ocs", "ocs"], "search.objective", "distinct"),
    (("search", "constraints", "max"), {"x/y": 1.0}, "search.constraints.max", "unknown metric key"),
    (("search", "constraints", "max_accuracy_drop"), 2, "search.constraints.max_accuracy_drop", "less than or equal"),
    (("search", "n_trials"), 0, "search.n_trials", "greater than or equal to 1"),
    (("search", "sampler"), "grid", "search.sampler", "auto"),
    (("search", "storage_url"), "x", "search.storage_url", "Extra inputs"),
])
def test_bad_search_fields_are_named(path, value, field, words) -> None:
    with pytest.raises(ConfigError) as err:
        validate_study(_with(path, value))
    assert err.value.field == f"study: {field}"
    assert words in str(err.value)


def test_nsga2_needs_several_objectives() -> None:
    raw = _with(("search", "objective"), "ocs")
    raw["search"]["sampler"] = "nsga2"
    with pytest.raises(ConfigError, match="several objectives"):
        validate_study(raw)


def test_a_study_needs_recipes_or_a_search() -> None:
    raw = copy.deepcopy(BASE)
    del raw["search"]
    with pytest.raises(ConfigError, match="'search' block"):
        validate_study(raw)


def test_run_study_refuses_a_search_only_study() -> None:
    from netzip_mlflow.study.runner import run_study

    with pytest.raises(ConfigError, match="netzip search"):
        run_study(validate_study(BASE))
