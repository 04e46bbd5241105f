"""Loading models from a tracking store someone else can write to: tensors only, hash-checked, a
pickle only when trusted. Every hostile case writes a marker file if its code ever runs."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from netzip_mlflow.cli.main import main
from netzip_mlflow.config.loader import load_study
from netzip_mlflow.errors import ModelError, NetzipError
from netzip_mlflow.models import rebuild
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study.resume import TAG_CONFIG_HASH, baseline_hash
from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.model_logging import log_torch_model
from netzip_mlflow.tracking.stored_model import load_pyfunc, load_run_model, log_model_weights

STUDY_DIR = Path(__file__).resolve().parents[1] / "study"
sys.path.insert(0, str(STUDY_DIR))
from conftest import tiny_study  # noqa: E402

SHAPE = (1, 8, 8)


class Planted(nn.Module):
    """What an attacker logs as a "model": unpickling it writes ``marker`` (it could run anything)."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def __reduce_ex__(self, protocol):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


def _plant_model(marker: Path) -> None:
    # pip_requirements given: MLflow would otherwise load the model in a subprocess to infer them
    mlflow.pytorch.log_model(Planted(marker), name="model", serialization_format="pickle", pip_requirements=["torch"])
    assert not marker.exists()


def _plant_study(spec_path: Path, marker: Path) -> tuple[str, str]:
    """A study run and a FINISHED baseline with the victim's study name and config hash."""
    spec = load_study(spec_path)
    experiment = mlflow.set_experiment(spec.experiment_name)
    tags = {keys.TAG_STUDY: spec.study, TAG_CONFIG_HASH: baseline_hash(spec)}
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags={**tags, keys.TAG_ROLE: keys.ROLE_STUDY}) as study:
        with mlflow.start_run(nested=True, run_name="baseline", tags={**tags, keys.TAG_ROLE: keys.ROLE_BASELINE}) as base:
            _plant_model(marker)
    return study.info.run_id, base.info.run_id


def _tiny_logged_model() -> tuple[str, nn.Module]:
    model = build_model("tiny_cnn", 10, SHAPE, seed=0).eval()
    mlflow.set_experiment("stored-model")
    with mlflow.start_run() as run:
        log_torch_model(model, torch.zeros(1, *SHAPE))
        manifest = log_model_weights(model, rebuild.architecture_manifest("classification", "tiny_cnn", 10, SHAPE, 0))
    assert manifest["kind"] == rebuild.ARCHITECTURE
    return run.info.run_id, model


def _artifact_path(run_id: str, relative: str) -> Path:
    root = MlflowClient().get_run(run_id).info.artifact_uri
    return Path(unquote(urlparse(root).path)) / relative


def test_safe_copy_loads_without_unpickling(store, monkeypatch):
    run_id, model = _tiny_logged_model()
    monkeypatch.setattr(mlflow.pytorch, "load_model", lambda *a, **k: pytest.fail("the pickle was loaded"))
    loaded = load_run_model(run_id)
    x = torch.randn(4, *SHAPE)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("artifact", ["weights/state_dict.pt", "weights/rebuild.json"])
def test_a_replaced_artifact_is_refused_by_hash(store, artifact):
    run_id, _ = _tiny_logged_model()
    path = _artifact_path(run_id, artifact)
    if artifact.endswith(".pt"):
        other = build_model("tiny_cnn", 10, SHAPE, seed=1)  # same shapes, other weights
        path.write_bytes(rebuild.weights_bytes(other))
    else:
        path.write_bytes(path.read_bytes().replace(b'"seed": 0', b'"seed": 1'))
    for trust in (False, True):  # trust allows a pickle, never a replaced artifact
        with pytest.raises(ModelError, match=r"has SHA-256 .* not the .* recorded when it was logged"):
            load_run_model(run_id, trust=trust)


def test_a_planted_pickle_is_refused_and_loads_only_with_trust(store, marker):
    mlflow.set_experiment("stored-model")
    with mlflow.start_run() as run:
        _plant_model(marker)
    with pytest.raises(ModelError) as refused:
        load_run_model(run.info.run_id)
    message = str(refused.value)
    assert "holds only a pickled model" in message and "--trust-model-file" in message and "\n" not in message
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the payload returns None, not a module
        load_run_model(run.info.run_id, trust=True)
    assert marker.exists()  # trusted: unpickled, as asked


def test_planted_pickle_with_forged_tags_is_still_refused(store, marker):
    """Tags are writable too: a pickle tagged with a hash but no tensor copy is not loaded."""
    mlflow.set_experiment("stored-model")
    with mlflow.start_run(tags={keys.TAG_WEIGHTS_SHA256: "0" * 64, keys.TAG_REBUILD_SHA256: "0" * 64}) as run:
        _plant_model(marker)
    with pytest.raises(ModelError, match="cannot download weights/rebuild.json"):
        load_run_model(run.info.run_id)
    assert not marker.exists()


@pytest.mark.slow
def test_resume_refuses_a_planted_baseline(store, tmp_path, marker):
    path = tiny_study(tmp_path, "victim")
    study_id, planted = _plant_study(path, marker)
    with pytest.raises(NetzipError, match="cannot reuse the baseline .* --trust-model-file"):
        run_study(path, progress=False)
    assert not marker.exists()
    runs = {r.info.run_id: r for r in MlflowClient().search_runs([mlflow.get_experiment_by_name("netzip-tiny-rel").experiment_id])}
    assert set(runs) == {study_id, planted}  # refused before anything was logged
    assert keys.TAG_ERROR not in runs[study_id].data.tags and runs[study_id].info.status == "FINISHED"
    with pytest.raises(Exception):  # noqa: B017 - what the payload returns is no model
        run_study(path, progress=False, trust_model_file=True)
    assert marker.exists()


def test_cli_evaluate_refuses_a_planted_model(store, marker, capsys):
    mlflow.set_experiment("stored-model")
    with mlflow.start_run() as run:
        _plant_model(marker)
    code = main(["--tracking-uri", store, "evaluate", f"runs:/{run.info.run_id}/model", "--data", "digits", "--no-isolate"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert code == 2
    assert len(errors) == 1, errors
    assert "holds only a pickled model" in errors[0] and "--trust-model-file" in errors[0]
    assert not marker.exists()
    with contextlib.suppress(Exception):  # what the payload returns is no model; the point is it ran
        main(["--tracking-uri", store, "evaluate", f"runs:/{run.info.run_id}/model", "--data", "digits", "--no-isolate", "--trust-model-file"])
    assert marker.exists()


def test_plugin_loader_refuses_a_planted_model(store, marker):
    mlflow.set_experiment("stored-model")
    with mlflow.start_run() as run:
        _plant_model(marker)
    with pytest.raises(ModelError, match="holds only a pickled model"):
        load_pyfunc(f"runs:/{run.info.run_id}/model")
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the payload returns no model
        load_pyfunc(f"runs:/{run.info.run_id}/model", trust=True)
    assert marker.exists()


def test_plugin_loader_gives_the_raw_module(store):
    run_id, model = _tiny_logged_model()
    pyfunc = load_pyfunc(f"runs:/{run_id}/model")
    raw = pyfunc.get_raw_model()
    x = torch.randn(2, *SHAPE)
    assert torch.equal(raw(x), model(x))
