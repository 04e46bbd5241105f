"""Sampling a concrete recipe from the search space (Optuna define-by-run, fixed trials)."""

from __future__ import annotations

import optuna
import pytest

from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.search.space import policy_group_names, sample_recipe

SEARCH = {
    "recipes": [
        {"name": "prune_ptq", "steps": [
            {"technique": "prune_structured", "params": {
                "amount": {"low": 0.2, "high": 0.6}, "importance": {"choices": ["l1", "l2"]},
                "layer_policy": {"groups": ["features.0", "features.3"], "low": 0.1, "high": 1.0},
                "finetune_epochs": 1,
            }},
            {"technique": "ptq", "params": {"calibration_batches": {"low": 1, "high": 8, "step": 1}}},
        ]},
        {"name": "gup", "technique": "prune_unstructured", "params": {"amount": {"low": 0.1, "high": 0.9, "log": True}}},
    ],
    "objective": "ocs",
}


def _spec(search=SEARCH):
    return validate_study({"study": "s", "data": {"builtin": "digits"}, "model": {"arch": "tiny_cnn"}, "search": search})


def test_fixed_trial_gives_the_pipeline_with_its_policy_string() -> None:
    spec = _spec()
    groups = {k: v for k, v in policy_group_names(spec.search).items()}
    assert groups == {(0, 0): ["features.0", "features.3"]}
    trial = optuna.trial.FixedTrial({
        "recipe": "prune_ptq", "prune_ptq.step1.amount": 0.4, "prune_ptq.step1.importance": "l2",
        "prune_ptq.step1.policy.features.0": 0.25, "prune_ptq.step1.policy.features.3": 1.0,
        "prune_ptq.step2.calibration_batches": 3,
    })
    recipe = sample_recipe(trial, spec.search, "trial_0000", groups)
    assert recipe.name == "trial_0000" and recipe.technique == "pipeline"
    prune, ptq = recipe.params["steps"]
    assert prune["params"]["amount"] == 0.4 and prune["params"]["importance"] == "l2"
    assert prune["params"]["layer_policy"] == "features.0=0.2500,features.3=1.0000"
    assert prune["params"]["finetune_epochs"] == 1 and prune["params"]["target"] == "params"  # fixed, default
    assert ptq["params"]["calibration_batches"] == 3


def test_the_other_template_is_sampled_with_its_own_names() -> None:
    spec = _spec()
    trial = optuna.trial.FixedTrial({"recipe": "gup", "gup.amount": 0.3})
    recipe = sample_recipe(trial, spec.search, "t", {})
    assert recipe.technique == "prune_unstructured" and recipe.params["amount"] == 0.3


def test_one_template_has_unprefixed_names_and_ints_stay_ints() -> None:
    spec = _spec({"recipes": [SEARCH["recipes"][0]]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    recipe = sample_recipe(trial, spec.search, "t", {(0, 0): ["features.0", "features.3"]})
    assert set(trial.params) == {
        "step1.amount", "step1.importance", "step1.policy.features.0", "step1.policy.features.3", "step2.calibration_batches"}
    assert 0.2 <= trial.params["step1.amount"] <= 0.6
    assert isinstance(recipe.params["steps"][1]["params"]["calibration_batches"], int)
    weights = [float(e.split("=")[1]) for e in recipe.params["steps"][0]["params"]["layer_policy"].split(",")]
    assert all(0.1 <= w <= 1.0 for w in weights)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_sampler_seed_same_recipes(seed) -> None:
    spec = _spec()

    def draw():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [sample_recipe(study.ask(), spec.search, "t", {(0, 0): ["features.0", "features.3"]}).params for _ in range(3)]

    assert draw() == draw()
