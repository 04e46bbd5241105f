"""A study with a bnn recipe: the kernels tag, 1-bit CHATS, the packed model logged, the radar's top k."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from netzip_mlflow.compression.binary import PackedBinaryConv2d
from netzip_mlflow.compression.bnn import FLOAT_KERNELS_NOTE
from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow


def test_a_bnn_recipe_logs_its_packed_model_and_kernels_tag(study_file, store):
    recipes = [{"name": "bnn", "technique": "bnn", "params": {"epochs": 1, "scaling": "channel"}}]
    result = run_study(study_file("bnn_study", recipes=recipes, report={"radar_top_k": 1}), progress=False)
    outcome = result.outcomes[0]
    assert outcome.status == "FINISHED", outcome
    client = MlflowClient(store)
    run = client.get_run(outcome.run_id)
    base = client.get_run(result.baseline_run_id).data.metrics
    assert run.data.tags[keys.TAG_LATENCY_KERNELS] == FLOAT_KERNELS_NOTE
    assert run.data.params["result.binary_layers"] == "1"
    assert run.data.metrics[keys.MACS] == base[keys.MACS]
    assert run.data.metrics[keys.CHATS] < base[keys.CHATS]
    assert run.data.metrics[keys.PARAMS] == base[keys.PARAMS]
    model = mlflow.pytorch.load_model(f"runs:/{outcome.run_id}/model", map_location="cpu")
    assert isinstance(model.features[3], PackedBinaryConv2d)
