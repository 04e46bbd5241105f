"""A recipe that raises, returns NaN or runs out of memory fails alone; the study goes on."""

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from netzip_mlflow.cli.main import main
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

RECIPES = [
    {"name": "raises", "technique": "test_raise"},
    {"name": "nan_outputs", "technique": "test_nan"},
    {"name": "oom_python", "technique": "test_oom", "params": {"kind": "python"}},
    {"name": "oom_torch", "technique": "test_oom", "params": {"kind": "torch"}},
    {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
]
EXPECTED = {
    "raises": "RuntimeError: boom from a test technique",
    "nan_outputs": "ModelError: recipe 'nan_outputs' returns non-finite outputs (NaN/Inf) for",
    "oom_python": "MemoryError: cannot allocate 20 GiB",
    "oom_torch": "OutOfMemoryError: CUDA out of memory.",
}


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    yield f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(previous)


def _run(path, store, capsys):
    """``netzip run`` in this process: (exit code, stderr, runs by name)."""
    code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    err = capsys.readouterr().err
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("netzip-tiny-rel")
    return code, err, {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}


def test_failures_are_isolated_and_summarised(plugin, study_file, store, capsys):
    path = study_file("isolation", recipes=RECIPES, model={"arch": "tiny_cnn", "train": {"epochs": 3, "lr": 0.1}})
    code, err, runs = _run(path, store, capsys)
    assert code == 1
    client = MlflowClient(store)
    assert runs["baseline"].info.status == "FINISHED"
    assert runs["isolation"].info.status == "FINISHED"  # the study itself completed
    assert runs["ptq_int8"].info.status == "FINISHED"
    assert keys.OCS in runs["ptq_int8"].data.metrics
    for name, start in EXPECTED.items():
        run = runs[name]
        assert run.info.status == "FAILED", name
        tag = run.data.tags[keys.TAG_ERROR]
        assert tag.startswith(start), (name, tag)
        assert "\n" not in tag and "second line" not in tag
        trace = client.download_artifacts(run.info.run_id, "error/traceback.txt")
        assert "Traceback" in open(trace).read()
        assert f"FAILED {name}" in err
    assert "4 of 5 recipes failed" in err
    # the failed runs are not ranked; the study's own leaderboard lists the baseline (row 0) and the good recipe
    board = pd.read_csv(client.download_artifacts(runs["isolation"].info.run_id, "leaderboard/leaderboard.csv"))
    assert board["recipe"].tolist() == ["baseline", "ptq_int8"] and board["rank"].tolist() == [0, 1]
    # baseline training (3 epochs) was sampled by MLflow's system metrics monitor; measuring was not
    system = {k for k in runs["baseline"].data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    assert not any(k.startswith("system/") for k in runs["ptq_int8"].data.metrics)  # ptq does not train


def test_a_hanging_model_fails_its_recipe_at_its_timeout_and_the_next_one_runs(study_file, store, cli):
    recipes = [
        {"name": "hangs", "technique": "test_hang", "timeout_s": 2},  # forward sleeps forever
        {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
    ]
    path = study_file("hang", recipes=recipes, model={"arch": "tiny_cnn", "train": {"epochs": 0}})
    # In its own process, as a user runs it: the recipe watchdog is a SIGALRM timer of that process.
    done = cli("--tracking-uri", store, "run", str(path), "--no-progress")
    code, err = done.returncode, done.stderr
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("netzip-tiny-rel")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
    assert code == 1, err[-2000:]
    assert runs["hangs"].info.status == "FAILED"
    # the forward pass first runs in the output check, where the watchdog finds it
    assert runs["hangs"].data.tags[keys.TAG_ERROR] == "timeout after 2 s in the output check"
    assert runs["ptq_int8"].info.status == "FINISHED"
    assert runs["hang"].info.status == "FINISHED"
    assert "FAILED hangs" in err
