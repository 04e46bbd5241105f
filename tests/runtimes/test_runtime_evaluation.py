"""Runtime models through the evaluator and MLflow: the isolated worker runs the runtime, tags,
ratios against the torch baseline, logged models that load back."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from netzip_mlflow.evaluation.evaluator import measure
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.model_logging import load_runtime_model, log_model

QUICK = LatencySettings(warmup_s=0.02, budget_s=0.2, min_samples=5)


def _config(isolate: bool, threads: int = 1) -> EvaluationConfig:
    return EvaluationConfig(isolate=isolate, threads=threads, idle_s=0.0, latency=QUICK, progress=False)


@pytest.mark.parametrize(("label", "runtime"), [("onnx_int8", "onnxruntime"), ("openvino", "openvino")])
def test_isolated_worker_runs_the_runtime_and_records_its_threads(label, runtime, exported, trained, digits):
    test = digits[2]
    base = measure(trained, test, config=_config(False))
    report = measure(exported[label].model, test, config=_config(True, threads=2), baseline=base)
    tags = report.tags
    assert tags[keys.TAG_RUNTIME] == runtime
    assert tags[keys.TAG_RUNTIME_ISOLATED] == "true"
    # read back from the session the worker opened, through the runtime's own option
    assert tags[keys.TAG_RUNTIME_THREADS] == "2"
    assert tags[keys.TAG_RUNTIME_THREAD_OPTION] == exported[label].model.runtime.thread_option
    assert tags[keys.TAG_SW_PREFIX + runtime] == exported[label].info["runtime_version"]
    assert report.metrics[keys.RAM_MODEL] > 0 and report.metrics[keys.LATENCY_MS] > 0
    assert report.metrics[keys.DISK_MB] * 1e6 == exported[label].model.size_report().disk_bytes
    # ratios stay against the torch baseline
    assert base.tags[keys.TAG_RUNTIME] == "torch"
    expected = base.metrics[keys.DISK_MB] / report.metrics[keys.DISK_MB]
    assert report.metrics[keys.RATIO_COMPRESSION] == pytest.approx(expected)
    assert keys.OCS in report.metrics


@pytest.mark.parametrize("label", ["onnx", "openvino_int8"])
def test_logged_runtime_models_load_back(label, exported):
    # the suite's autouse fixture gives this test its own tracking store
    model = exported[label].model
    x = torch.randn(5, 1, 8, 8)
    with mlflow.start_run():
        uri = log_model(model, x)
    loaded = load_runtime_model(uri)
    assert torch.equal(loaded(x), model(x))
    assert loaded.runtime.name == model.runtime.name
    pyfunc = mlflow.pyfunc.load_model(uri)
    out = pyfunc.predict(x.numpy()) if label != "onnx" else pyfunc.predict({"input": x.numpy()})
    out = np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    np.testing.assert_allclose(out, model(x).numpy(), rtol=0, atol=1e-5)
    if label == "onnx":
        import onnx

        assert isinstance(mlflow.onnx.load_model(uri), onnx.ModelProto)
