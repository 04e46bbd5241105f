"""End to end on a tiny model: a seeded search reproduces itself, constraints keep infeasible trials
out of "best", artifacts are logged, and promote registers the winner in the Model Registry."""

from __future__ import annotations

import copy
import subprocess
import sys

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from netzip_mlflow.errors import TrackingError
from netzip_mlflow.search.runner import search
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.promote import promote

pytestmark = pytest.mark.slow

EXPERIMENT = "netzip-tiny-search"
TINY = {
    "study": "tiny_search",
    "experiment": EXPERIMENT,
    "seed": 0,
    "data": {"builtin": "digits", "limit": 200, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 3, "lr": 0.1}},
    "evaluation": {"isolate": False, "idle_s": 0.0, "system_metrics": False,
                   "latency": {"warmup_s": 0.02, "budget_s": 0.2, "min_samples": 5}},
    "search": {
        "recipes": [{"name": "prune", "technique": "prune_structured", "params": {
            "amount": {"low": 0.1, "high": 0.8}, "importance": {"choices": ["l1", "l2"]},
            "layer_policy": {"groups": "auto", "low": 0.2, "high": 1.0}, "finetune_epochs": 1, "lr": 0.05,
            "round_to": 1}}],  # 16/32-channel model: any channel count
        "objective": "accuracy/top1",
        "constraints": {"max": {"size/params": 0.0}},  # set from the baseline below
        "n_trials": 5,
        "startup_trials": 2,
        "seed": 7,
    },
}
BASELINE_PARAMS = 1 * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32 + 32 * 10 + 10  # tiny_cnn on 8x8 digits: 5,178


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    yield root
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def study_yaml(store):
    raw = copy.deepcopy(TINY)
    raw["search"]["constraints"]["max"]["size/params"] = 0.5 * BASELINE_PARAMS
    path = store / "tiny_search.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def first(study_yaml):
    return search(study_yaml, progress=False)


def _trial_metrics(result):
    client = MlflowClient()
    return {t.number: client.get_run(t.run_id).data.metrics for t in result.trials if t.state == "COMPLETE"}


def test_baseline_parameter_count_is_the_closed_form(first) -> None:
    base = MlflowClient().get_run(first.baseline_run_id).data.metrics
    assert base[keys.PARAMS] == BASELINE_PARAMS


def test_constraints_keep_infeasible_trials_out_of_best(first) -> None:
    bound = 0.5 * BASELINE_PARAMS
    metrics = _trial_metrics(first)
    assert len(first.trials) == 5 and len(metrics) == 5
    by_number = {t.number: t for t in first.trials}
    for number, m in metrics.items():  # feasibility recomputed from the logged metric
        assert by_number[number].feasible is (m[keys.PARAMS] <= bound)
        tags = MlflowClient().get_run(by_number[number].run_id).data.tags
        assert tags[keys.TAG_TRIAL_FEASIBLE] == ("true" if m[keys.PARAMS] <= bound else "false")
        assert tags[keys.TAG_TRIAL] == str(number) and tags[keys.TAG_ROLE] == keys.ROLE_COMPRESSED
    feasible = {n: m[keys.TOP1] for n, m in metrics.items() if m[keys.PARAMS] <= bound}
    assert feasible, "the space should hold feasible trials"
    expected = max(sorted(feasible), key=lambda n: feasible[n])
    assert [t.number for t in first.best] == [expected]
    assert any(not t.feasible for t in first.trials), "the space should hold infeasible trials too"


def test_trial_runs_carry_the_sampled_params(first) -> None:
    client = MlflowClient()
    for t in first.trials:
        params = client.get_run(t.run_id).data.params
        assert params["trial.number"] == str(t.number)
        for name, value in t.params.items():
            assert params[f"trial.{name}"] == str(value)
        policy = params["recipe.layer_policy"]
        assert [e.split("=")[0] for e in policy.split(",")] == ["features.0", "features.3"]


def test_artifacts_on_the_parent_run(first) -> None:
    client = MlflowClient()
    names = {a.path for a in client.list_artifacts(first.study_run_id, "search")}
    names |= {a.path for a in client.list_artifacts(first.study_run_id, "search/plots")}
    for path in ("search/trials.csv", "search/importances.json", "search/best_policy.csv",
                 "search/plots/pareto_front.png", "search/plots/optimization_history.png",
                 "search/plots/best_policy.png"):
        assert path in names, path
    parent = client.get_run(first.study_run_id)
    assert parent.data.tags[keys.TAG_SEARCH_BEST_RUNS] == first.best[0].run_id
    assert parent.data.metrics[keys.SEARCH_TRIAL_COUNTS["COMPLETE"]] == 5
    infeasible = sum(t.feasible is False for t in first.trials)
    assert parent.data.metrics[keys.SEARCH_TRIAL_COUNTS["INFEASIBLE"]] == infeasible
    policy = client.download_artifacts(first.study_run_id, "search/best_policy.csv")
    rows = open(policy).read().splitlines()
    assert rows[0] == "group,weight,channel_ratio" and len(rows) == 3


def test_same_seed_reproduces_the_search_and_its_best(first, study_yaml) -> None:
    second = search(study_yaml, progress=False, fresh=True)
    assert second.study_run_id != first.study_run_id and second.optuna_study != first.optuna_study
    assert [t.params for t in second.trials] == [t.params for t in first.trials]
    assert [t.values for t in second.trials] == [t.values for t in first.trials]
    assert [t.number for t in second.best] == [t.number for t in first.best]
    assert second.best[0].params == first.best[0].params


def test_promote_registers_the_best_feasible_run_with_alias_and_tags(first) -> None:
    where = f"size/params <= {0.5 * BASELINE_PARAMS}"
    done = promote(EXPERIMENT, "tiny_search", "tiny-search-model", by=keys.TOP1, where=where, alias="champion")
    client = MlflowClient()
    version = client.get_model_version_by_alias("tiny-search-model", "champion")
    assert str(version.version) == done.version
    run = client.get_run(done.run_id)
    assert run.data.metrics[keys.PARAMS] <= 0.5 * BASELINE_PARAMS
    # the best of every feasible compressed run of the study (both searches' trials)
    runs = client.search_runs([run.info.experiment_id], f"tags.`{keys.TAG_ROLE}` = 'compressed'")
    best_top1 = max(r.data.metrics[keys.TOP1] for r in runs
                    if r.data.metrics.get(keys.PARAMS, float("inf")) <= 0.5 * BASELINE_PARAMS)
    assert run.data.metrics[keys.TOP1] == best_top1 == done.value
    tags = version.tags
    assert tags[keys.TAG_BASELINE_RUN] == first.baseline_run_id
    assert float(tags[keys.TOP1]) == run.data.metrics[keys.TOP1]
    assert float(tags[keys.PARAMS]) == run.data.metrics[keys.PARAMS]
    assert tags[keys.TAG_PROMOTED_BY] == keys.TOP1 and tags[keys.TAG_PROMOTED_WHERE] == where
    assert version.run_id == done.run_id


def test_promote_refuses_in_one_line_when_nothing_meets_where(first) -> None:
    with pytest.raises(TrackingError) as err:
        promote(EXPERIMENT, "tiny_search", "never-registered", where="accuracy/top1 > 1.5")
    assert "\n" not in str(err.value) and "accuracy/top1 > 1.5" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "netzip_mlflow.cli.main", "--tracking-uri", mlflow.get_tracking_uri(), "promote",
         "--experiment", EXPERIMENT, "--study", "tiny_search", "--model-name", "never-registered",
         "--where", "accuracy/top1 > 1.5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]  # MLflow may warn too
    assert len(lines) == 1 and "no compressed run" in lines[0]
    with pytest.raises(Exception):
        MlflowClient().get_registered_model("never-registered")
