"""The ``netzip`` MLflow model evaluator: discovery by name, metrics equal to nz.evaluate, logging once."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import netzip_mlflow as nz
from netzip_mlflow.errors import ConfigError, DataError, ModelError
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.models.zoo import TinyCNN
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.model_logging import log_torch_model
from netzip_mlflow.tracking.plugin import NetzipEvaluator, PluginConfig, restore_images

SHAPE = (1, 8, 8)
N = 48
CLASSES = 4
FAST = {"isolate": False, "idle_s": 0.0, "latency_budget_s": 0.2, "warmup_s": 0.0, "score_at_chance": True}
EXACT_PREFIXES = ("accuracy/", "size/", "speed/macs", "speed/chats")
"""Metrics that depend only on the model and the data, not on timing."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A private SQLite tracking store and experiment for this module."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment("plugin-tests")
    yield root
    mlflow.clear_active_model()
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(N, *SHAPE, generator=generator)
    y = torch.randint(0, CLASSES, (N,), generator=generator)
    return x, y


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = TinyCNN(CLASSES, SHAPE).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (net.features[1], net.features[4]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return net


def _log(model, example) -> tuple[str, str, str]:
    """Log ``model`` in its own run; (models:/ URI, runs:/ URI, model id)."""
    with mlflow.start_run() as run:
        uri = log_torch_model(model, example)
    mlflow.clear_active_model()  # log_model makes the model active for the whole process
    return uri, f"runs:/{run.info.run_id}/model", uri.removeprefix("models:/")


def _evaluate(model_uri, x, y, model_type="netzip", **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run() as run:
            result = mlflow.models.evaluate(
                model=model_uri,
                data=x.reshape(len(x), -1).numpy(),
                targets=y.numpy(),
                model_type=model_type,
                evaluators=["netzip"],
                evaluator_config={"netzip": {"input_shape": list(SHAPE), **FAST, **config}},
            )
    mlflow.clear_active_model()
    return run.info.run_id, result


def _exact(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(EXACT_PREFIXES)}


def test_entry_point_resolves_by_name_in_a_fresh_interpreter():
    code = (
        "import mlflow.models\n"
        "from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry as r\n"
        "e = r.get_evaluator('netzip')\n"
        "print('netzip' in mlflow.models.list_evaluators(), type(e).__module__, type(e).__name__)\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "netzip_mlflow.tracking.plugin", "NetzipEvaluator"]


@pytest.mark.parametrize("model_type", ["classifier", "regressor", "text", None, "NETZIP"])
def test_can_evaluate_only_netzip(model_type):
    assert NetzipEvaluator.can_evaluate(model_type="netzip", evaluator_config={}) is True
    assert NetzipEvaluator.can_evaluate(model_type=model_type, evaluator_config={}) is False


def test_restore_images_keeps_row_major_order(data):
    x, _ = data
    flat = x.reshape(N, -1).numpy().astype(np.float64)
    assert np.array_equal(restore_images(flat, SHAPE), x.numpy())
    frame = pd.DataFrame(flat)
    assert np.array_equal(restore_images(frame, SHAPE), x.numpy())
    with pytest.raises(DataError, match="input_shape"):
        restore_images(flat, (1, 8, 7))


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="input_shape"):
        PluginConfig.from_mapping({})
    with pytest.raises(ConfigError, match="input_shape"):
        PluginConfig.from_mapping({"input_shape": [1, 0, 8]})
    with pytest.raises(ConfigError, match="bogus"):
        PluginConfig.from_mapping({"input_shape": [1, 8, 8], "bogus": 1})
    config = PluginConfig.from_mapping({"input_shape": [3, 4, 4], "study": "s", "col_mapping": {}})
    assert config.input_shape == (3, 4, 4) and dict(config.tags) == {keys.TAG_STUDY: "s"}
    assert config.evaluation.device == "cpu" and config.evaluation.progress is False  # the plugin default


def test_plugin_metrics_equal_nz_evaluate_and_are_logged_once(store, data, model):
    x, y = data
    models_uri, _, model_id = _log(model, x[:1])
    run_id, result = _evaluate(models_uri, x, y)

    direct = nz.evaluate(
        model, DataLoader(TensorDataset(x, y), batch_size=16), log_to_mlflow=False,
        config=nz.EvaluationConfig(isolate=False, idle_s=0.0, progress=False,
                                   latency=LatencySettings(warmup_s=0.0, budget_s=0.2)),
    )
    assert _exact(result.metrics) == _exact(direct.metrics)
    assert len(_exact(result.metrics)) >= 15
    assert set(result.metrics) == set(direct.metrics)
    assert result.metrics[keys.LATENCY_MS] > 0

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics == pytest.approx(result.metrics)
    for key in result.metrics:
        assert len(client.get_metric_history(run_id, key)) == 1, key
    assert run.data.tags[keys.TAG_ROLE] == keys.ROLE_BASELINE
    assert run.data.params["eval.input_shape"] == "1x8x8"
    logged_model = client.get_logged_model(model_id)  # the MLflow "Models" view reads these
    assert {m.key: m.value for m in logged_model.metrics if m.run_id == run_id} == pytest.approx(result.metrics)

    ops = result.artifacts["ops_per_layer"].content
    assert list(ops["name"]) == [layer.name for layer in direct.ops.per_layer]
    assert int(ops["macs"].sum()) == int(direct.metrics[keys.MACS])
    image = result.artifacts["confusion_confusion_matrix"].content
    assert isinstance(image, Image.Image) and min(image.size) > 200


def test_runs_uri_and_baseline_comparison(store, data, model):
    x, y = data
    _, base_runs_uri, base_model_id = _log(model, x[:1])
    base_run, base = _evaluate(base_runs_uri, x, y)
    pruned = nz.compress(model, "prune_unstructured", {"amount": 0.7, "importance": "l1"}).model
    _, runs_uri, model_id = _log(pruned, x[:1])
    run_id, result = _evaluate(runs_uri, x, y, baseline_run_id=base_run, technique="prune_unstructured")

    client = MlflowClient()
    for key in result.metrics:  # no model id from a runs:/ URI: the evaluator logged them itself
        assert len(client.get_metric_history(run_id, key)) == 1, key
    linked = {m.key for m in client.get_logged_model(model_id).metrics if m.run_id == run_id}
    assert linked == set(result.metrics)

    with torch.no_grad():
        base_pred, pred = model(x).argmax(1), pruned(x).argmax(1)
    m, b = result.metrics, base.metrics
    assert m[keys.AGREEMENT] == pytest.approx(float((pred == base_pred).float().mean()))
    assert m[keys.TOP1] == pytest.approx(float((pred == y).float().mean()))
    assert m[keys.RATIO_PERFORMANCE] == pytest.approx(m[keys.TOP1] / b[keys.TOP1])
    assert m[keys.RATIO_COMPRESSION] == pytest.approx(b[keys.DISK_MB] / m[keys.DISK_MB])
    assert m[keys.RATIO_SPEEDUP] == pytest.approx(b[keys.CHATS] / m[keys.CHATS])
    assert keys.OCS in m
    tags = client.get_run(run_id).data.tags
    assert tags[keys.TAG_ROLE] == keys.ROLE_COMPRESSED
    assert tags[keys.TAG_BASELINE_RUN] == base_run
    assert tags[keys.TAG_TECHNIQUE] == "prune_unstructured"
    assert "class_impact_per_class" in result.artifacts


def test_dataframe_with_label_column_and_no_evaluator_named(store, data, model):
    x, y = data
    models_uri, _, _ = _log(model, x[:1])
    frame = pd.DataFrame(x.reshape(N, -1).numpy(), columns=[f"p{i}" for i in range(64)]).assign(label=y.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            result = mlflow.models.evaluate(
                model=models_uri, data=frame, targets="label", model_type="netzip",
                evaluator_config={"input_shape": list(SHAPE), **FAST},  # evaluator found by model type
            )
    mlflow.clear_active_model()
    with torch.no_grad():
        expected = float((model(x).argmax(1) == y).float().mean())
    assert result.metrics[keys.TOP1] == pytest.approx(expected)


def test_scikit_learn_default_evaluation_is_unaffected(store):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    y = (y == 2).astype(int)  # binary: the default evaluator draws fewer plots
    clf = LogisticRegression(max_iter=500).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(clf, name="clf", pip_requirements=["scikit-learn"])
            result = mlflow.models.evaluate(
                info.model_uri, x, targets=y, model_type="classifier",
                evaluator_config={"log_model_explainability": False},
            )
    mlflow.clear_active_model()
    assert result.metrics["accuracy_score"] == pytest.approx(clf.score(x, y))
    assert not any(k.startswith(("speed/", "size/", "accuracy/")) for k in result.metrics)


def test_non_torch_model_is_refused(store):
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(20, 4))
    y = np.arange(20) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="clf",
                                            pip_requirements=["scikit-learn"])
            with pytest.raises(ModelError, match="PyTorch"):
                mlflow.models.evaluate(
                    info.model_uri, x, targets=y, model_type="netzip", evaluators=["netzip"],
                    evaluator_config={"netzip": {"input_shape": [4]}},
                )
    mlflow.clear_active_model()


def test_joins_an_mlflow_classifier_evaluation(store, model, data):
    """model_type="classifier" (MLflow's own type) with the netzip evaluator configured: the NetZIP
    metrics, equal to a direct measurement."""
    x, y = data
    uri, _, _ = _log(model, x[:2])
    _, result = _evaluate(uri, x, y, model_type="classifier")
    with torch.no_grad():
        top1 = float((model(x).argmax(1) == y).float().mean())
    assert result.metrics[keys.TOP1] == pytest.approx(top1)
    assert keys.MACS in result.metrics and keys.LATENCY_MS in result.metrics


def test_classifier_evaluations_without_netzip_config_are_left_alone():
    assert NetzipEvaluator.can_evaluate(model_type="netzip", evaluator_config={})
    assert NetzipEvaluator.can_evaluate(model_type="classifier", evaluator_config={"input_shape": [1, 8, 8]})
    assert not NetzipEvaluator.can_evaluate(model_type="classifier", evaluator_config={})
    assert not NetzipEvaluator.can_evaluate(model_type="regressor", evaluator_config={"input_shape": [1]})
