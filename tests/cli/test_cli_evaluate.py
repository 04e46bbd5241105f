"""``netzip evaluate``: one model file measured, logged as a run, and compared with a baseline run."""

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score

from netzip_mlflow.cli.main import main
from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

FAST = ["--data", "digits", "--arch", "tiny_cnn", "--no-isolate", "--test-fraction", "0.2"]


def _expected_top1(model: torch.nn.Module) -> float:
    split = load_builtin("digits", 0.2, 0)
    images = torch.stack([split.test[i][0] for i in range(len(split.test))])
    labels = np.array([int(split.test[i][1]) for i in range(len(split.test))])
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1).numpy()
    return accuracy_score(labels, predicted)


@pytest.fixture()
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    yield uri, MlflowClient(uri)
    mlflow.set_tracking_uri(previous)


def test_evaluate_a_state_dict_file_logs_a_run_with_sklearn_accuracy(store, tmp_path):
    uri, client = store
    model = build_model("tiny_cnn", 10, (1, 8, 8), seed=0)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)

    code = main(["--tracking-uri", uri, "evaluate", str(path), *FAST, "--run-name", "mine"])

    assert code == 0
    exp = client.get_experiment_by_name("netzip-evaluate")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["mlflow.runName"] == "mine"
    assert run.data.metrics[keys.TOP1] == pytest.approx(_expected_top1(model))
    assert run.data.metrics[keys.PARAMS] == sum(p.numel() for p in model.parameters())


def test_evaluate_against_a_baseline_run_adds_ratios(store, tmp_path):
    uri, client = store
    model = build_model("tiny_cnn", 10, (1, 8, 8), seed=0)
    torch.save(model.state_dict(), tmp_path / "base.pt")
    assert main(["--tracking-uri", uri, "evaluate", str(tmp_path / "base.pt"), *FAST]) == 0
    exp = client.get_experiment_by_name("netzip-evaluate")
    (base,) = client.search_runs([exp.experiment_id])

    with torch.no_grad():
        for p in model.parameters():
            p[p.abs() < p.abs().median()] = 0.0
    torch.save(model.state_dict(), tmp_path / "pruned.pt")
    code = main(["--tracking-uri", uri, "evaluate", str(tmp_path / "pruned.pt"), *FAST, "--baseline-run", base.info.run_id])

    assert code == 0
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    metrics = runs[0].data.metrics
    assert {keys.RATIO_PERFORMANCE, keys.RATIO_COMPRESSION, keys.OCS} <= set(metrics)
    assert metrics[keys.SPARSITY] == pytest.approx(0.5, abs=0.02)


def test_evaluate_refuses_a_whole_pickled_module_without_trust(store, tmp_path):
    uri, _ = store
    path = tmp_path / "whole.pt"
    torch.save(build_model("tiny_cnn", 10, (1, 8, 8), seed=0), path)

    assert main(["--tracking-uri", uri, "evaluate", str(path), "--data", "digits", "--no-isolate"]) == 2


def test_evaluate_errors_name_its_own_flags(store, tmp_path, capsys):
    uri, _ = store
    path = tmp_path / "five.pt"
    torch.save(build_model("tiny_cnn", 5, (1, 8, 8)).state_dict(), path)
    code = main(["--tracking-uri", uri, "evaluate", str(path), "--data", "digits", "--arch", "mobilenet_v3_smal"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--arch: unknown architecture 'mobilenet_v3_smal'" in err and "model.arch" not in err
    code = main(["--tracking-uri", uri, "evaluate", str(path), "--data", "digits", "--arch", "tiny_cnn"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and err.startswith("error: MODEL:") and "does not fit" in err and "model.path" not in err
