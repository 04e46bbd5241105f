"""log_report: each metric once, linked to a LoggedModel on request, and the artifact files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from torch.utils.data import TensorDataset

import netzip_mlflow as nz
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.models.zoo import TinyCNN
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.logging import (
    CONFUSION_ARTIFACT,
    OPS_ARTIFACT,
    log_report,
    write_artifacts,
)
from netzip_mlflow.tracking.runs import PREDICTIONS_ARTIFACT, load_predictions

FAST = nz.EvaluationConfig(isolate=False, idle_s=0.0, progress=False,
                           latency=LatencySettings(warmup_s=0.0, budget_s=0.1))


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 3, (30,))
    return nz.evaluate(TinyCNN(3, (1, 8, 8)).eval(), TensorDataset(x, y), config=FAST, log_to_mlflow=False)


@pytest.fixture()
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_write_artifacts_lists_what_it_wrote(report, tmp_path):
    paths = write_artifacts(report, tmp_path, confusion=True)
    assert paths == sorted([CONFUSION_ARTIFACT, OPS_ARTIFACT, PREDICTIONS_ARTIFACT])
    with Image.open(tmp_path / CONFUSION_ARTIFACT) as image:
        assert min(image.size) > 200
    assert write_artifacts(report, tmp_path / "plain") == sorted([OPS_ARTIFACT, PREDICTIONS_ARTIFACT])


def test_metrics_logged_once_and_linked_to_the_model(report, client):
    experiment = client.create_experiment("log")
    run_id = client.create_run(experiment).info.run_id
    model_id = client.create_logged_model(experiment).model_id
    log_report(report, run_id, client, model_id=model_id, dataset_name="d", dataset_digest="abc")
    run = client.get_run(run_id)
    assert run.data.metrics == pytest.approx(report.metrics)
    for key in report.metrics:
        assert len(client.get_metric_history(run_id, key)) == 1, key
    linked = client.get_logged_model(model_id).metrics
    assert {m.key: m.value for m in linked} == pytest.approx(report.metrics)
    assert {(m.dataset_name, m.dataset_digest, m.run_id) for m in linked} == {("d", "abc", run_id)}
    assert run.data.tags[keys.TAG_ROLE] == keys.ROLE_BASELINE
    assert run.data.params["eval.batch_size"] == "1"
    loaded = load_predictions(run_id, client)
    assert np.array_equal(loaded.topk, report.predictions.topk)


def test_without_metrics_logs_params_tags_and_artifacts(report, client):
    run_id = client.create_run(client.create_experiment("nometrics")).info.run_id
    log_report(report, run_id, client, log_metrics=False, confusion=True)
    run = client.get_run(run_id)
    assert run.data.metrics == {}
    assert run.data.params["eval.input_shape"] == "1x8x8"
    listed = {a.path for a in client.list_artifacts(run_id, "confusion")}
    assert listed == {CONFUSION_ARTIFACT}
