"""A recipe whose model hangs fails with the watchdog's reason at its timeout; the study goes on."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from netzip_mlflow.cli.main import main
from netzip_mlflow.study.watchdog import RecipeTimeout, Watchdog, default_recipe_timeout_s, training_epochs
from netzip_mlflow.tracking import keys

RECIPES = [
    {"name": "hangs", "technique": "test_hang", "timeout_s": 2},
    {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
]


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    yield f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_a_hanging_model_fails_its_recipe_and_the_next_one_runs(plugin, study_file, store, capsys):
    path = study_file("hang", recipes=RECIPES, model={"arch": "tiny_cnn", "train": {"epochs": 0}})
    code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("netzip-tiny-rel")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
    assert runs["hangs"].info.status == "FAILED"
    # the forward pass first runs in the output check, where the watchdog finds it
    assert runs["hangs"].data.tags[keys.TAG_ERROR] == "timeout after 2 s in the output check"
    assert runs["ptq_int8"].info.status == "FINISHED"
    assert runs["hang"].info.status == "FINISHED"
    assert "FAILED hangs" in err


def test_the_watchdog_interrupts_a_sleep_and_names_the_phase():
    import time

    with pytest.raises(RecipeTimeout, match=r"^timeout after 0.5 s in sleeping$"):
        with Watchdog(0.5) as dog:
            dog.phase = "sleeping"
            time.sleep(3600)


def test_an_exception_handler_in_the_model_cannot_swallow_the_timeout():
    import time

    with pytest.raises(RecipeTimeout):
        with Watchdog(0.5):
            try:
                time.sleep(3600)
            except Exception:  # noqa: BLE001 - what a careless model might do
                pytest.fail("the timeout was caught as an Exception")


def test_no_limit_leaves_sigalrm_alone():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    with Watchdog(0):
        assert signal.getsignal(signal.SIGALRM) is before
    with Watchdog(100):
        assert signal.getsignal(signal.SIGALRM) is not before
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_default_recipe_timeout_grows_with_training():
    assert training_epochs({"steps": [{"params": {"epochs": 2}}, {"params": {"finetune_epochs": 1}}]}) == 3
    none = default_recipe_timeout_s({}, 1000, 420.0)
    assert none == 1800 + 2 * 420
    assert default_recipe_timeout_s({"epochs": 2}, 1000, 420.0) == none + 2 * (600 + 0.5 * 1000)
