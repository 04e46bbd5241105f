"""The team deployment end to end: a PostgreSQL-backed MLflow server with basic auth and a local Ray
cluster (head + one worker advertising ``rpi4``) run the tiny study with 4 recipes in parallel.

Checked: every run is recorded under the study run; the ``rpi4`` recipe and its own baseline ran on
the worker that has ``rpi4``; the other recipes compare against the driver's baseline; the
leaderboard equals the local executor's apart from timing and energy figures; the server refuses
requests without credentials.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest
import yaml
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.leaderboard import leaderboard
from netzip_mlflow.cli.main import main
from netzip_mlflow.study.executors import TAG_HW_CLASS, TAG_RAY_NODE_ID
from netzip_mlflow.tracking import keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDY = {
    "study": "tiny-ray",
    "experiment": "netzip-tiny-ray",
    "seed": 0,
    "data": {"builtin": "digits", "limit": 300, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 2, "lr": 0.1}},
    "evaluation": {"isolate": False, "idle_s": 0.0, "latency": {"warmup_s": 0.05, "budget_s": 0.3, "min_samples": 5},
                   "ratios": {"score_at_chance": True}},  # a 2-epoch tiny model is not provably above chance
    "recipes": [
        {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 2}},
        {"name": "gup_l1_50", "technique": "prune_unstructured", "params": {"importance": "l1", "amount": 0.5}},
        {"name": "structured_50", "technique": "prune_structured", "params": {"importance": "l1", "amount": 0.5}},
        {"name": "rpi4_random_30", "technique": "prune_unstructured", "params": {"importance": "random", "amount": 0.3},
         "resources": {"num_cpus": 1, "custom": {"rpi4": 1}}},
    ],
}
RECIPES = [r["name"] for r in STUDY["recipes"]]
EXACT = [keys.TOP1, keys.CHATS, keys.PARAMS, keys.PARAMS_NONZERO, keys.DISK_MB,
         keys.RATIO_PERFORMANCE, keys.RATIO_SPEEDUP, keys.RATIO_COMPRESSION]
"""Leaderboard columns that do not depend on timing (latency and energy figures, and the OCS that
includes the energy ratio, do)."""


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "tiny-ray.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ray_study(study_file, mlflow_server, ray_cluster):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.username)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.password)
    try:
        code = main(["--tracking-uri", mlflow_server.url, "run", str(study_file), "--no-progress",
                     "--executor", "ray", "--address", ray_cluster.address])
        client = MlflowClient(mlflow_server.url)
        exp = client.get_experiment_by_name(STUDY["experiment"])
        runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
        board = leaderboard(STUDY["experiment"], study=STUDY["study"], tracking_uri=mlflow_server.url)
        yield code, runs, board
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        mp.undo()
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def local_board(study_file, tmp_path_factory):
    import mlflow

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path_factory.mktemp('local')}/mlflow.db"
    try:
        assert main(["--tracking-uri", uri, "run", str(study_file), "--no-progress"]) == 0
        yield leaderboard(STUDY["experiment"], study=STUDY["study"], tracking_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous)


def test_every_run_recorded_under_the_study(ray_study):
    code, runs, _ = ray_study
    assert code == 0
    assert set(runs) == {"tiny-ray", "baseline", "baseline@rpi4", *RECIPES}
    parent = runs["tiny-ray"]
    assert parent.info.status == "FINISHED"
    for name in ("baseline", "baseline@rpi4", *RECIPES):
        assert runs[name].info.status == "FINISHED", name
        assert runs[name].data.tags["mlflow.parentRunId"] == parent.info.run_id, name
    for name in RECIPES:
        assert runs[name].data.tags["netzip.executor"] == "ray"
        assert keys.TOP1 in runs[name].data.metrics and keys.OCS in runs[name].data.metrics


def test_custom_resource_recipe_ran_on_the_worker_that_has_it(ray_study, ray_cluster):
    _, runs, _ = ray_study
    rpi, rpi_base = runs["rpi4_random_30"], runs["baseline@rpi4"]
    assert rpi.data.tags[TAG_RAY_NODE_ID] == ray_cluster.worker_node_id
    assert rpi_base.data.tags[TAG_RAY_NODE_ID] == ray_cluster.worker_node_id
    assert rpi.data.tags[TAG_HW_CLASS] == "rpi4" and rpi_base.data.tags[TAG_HW_CLASS] == "rpi4"
    # measured against the baseline evaluated on the same machine class
    assert rpi.data.tags[keys.TAG_BASELINE_RUN] == rpi_base.info.run_id
    assert rpi_base.data.tags[keys.TAG_ROLE] == keys.ROLE_BASELINE
    for name in ("ptq_int8", "gup_l1_50", "structured_50"):
        assert runs[name].data.tags[keys.TAG_BASELINE_RUN] == runs["baseline"].info.run_id
        assert runs[name].data.tags[TAG_RAY_NODE_ID] in {ray_cluster.head_node_id, ray_cluster.worker_node_id}
    # the same baseline model, so the same accuracy wherever it was evaluated
    assert rpi_base.data.metrics[keys.TOP1] == runs["baseline"].data.metrics[keys.TOP1]


def test_models_and_artifacts_are_on_the_served_artifact_store(ray_study, mlflow_server):
    _, runs, _ = ray_study
    stored = {p.name for p in mlflow_server.artifacts.rglob("*")}
    assert "MLmodel" in stored
    for name in RECIPES:
        assert runs[name].info.artifact_uri.startswith("mlflow-artifacts:"), runs[name].info.artifact_uri


def test_leaderboard_equals_the_local_executors(ray_study, local_board):
    _, _, board = ray_study
    ray_rows = board.set_index("recipe")
    local_rows = local_board.set_index("recipe")
    assert sorted(ray_rows.index) == sorted(local_rows.index) == sorted(RECIPES)
    for recipe in RECIPES:
        for column in EXACT:
            a, b = float(ray_rows.loc[recipe, column]), float(local_rows.loc[recipe, column])
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (recipe, column, a, b)


def test_server_refuses_requests_without_credentials(mlflow_server):
    url = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
