"""Executors without a cluster: choosing one, the recipe ``resources`` field, refusing a tracking URI
that Ray workers cannot reach, and recipe order not changing what a recipe sees."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from netzip_mlflow.cli.main import main
from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.study.context import StudyData
from netzip_mlflow.study.executors import (
    LocalExecutor,
    RayExecutor,
    StudyJob,
    check_remote_tracking_uri,
    make_executor,
    reset_data_order,
)

STUDY = {
    "study": "tiny",
    "data": {"builtin": "digits", "limit": 100},
    "recipes": [{"name": "a", "technique": "ptq"}],
}


def study(**recipe_extra):
    raw = {**STUDY, "recipes": [{"name": "a", "technique": "ptq", **recipe_extra}]}
    return validate_study(raw)


def test_resources_default_and_hardware_class():
    spec = study()
    r = spec.recipes[0].resources
    assert (r.num_cpus, r.num_gpus, r.custom, r.hardware_class) == (1.0, 0.0, {}, "")
    spec = study(resources={"num_cpus": 2, "custom": {"rpi4": 1, "arm": 0.5}})
    assert spec.recipes[0].resources.hardware_class == "arm+rpi4"
    assert spec.executor.kind == "local" and spec.executor.address is None


@pytest.mark.parametrize(
    "resources, problem",
    [
        ({"custom": {"GPU": 1}}, "built-in Ray resource"),
        ({"custom": {"node:1.2.3.4": 1}}, "built-in Ray resource"),
        ({"custom": {"rpi 4": 1}}, "must be a letter"),
        ({"custom": {"rpi4": 0}}, "amount > 0"),
        ({"num_cpus": -1}, "greater than or equal"),
        ({"gpus": 1}, "Extra inputs"),
    ],
)
def test_bad_resources_are_refused_with_the_field(resources, problem):
    with pytest.raises(ConfigError) as err:
        study(resources=resources)
    assert "resources" in str(err.value) and problem in str(err.value)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", "mlruns",
                                 "postgresql://u@db/mlflow"])
def test_ray_refuses_a_tracking_uri_workers_cannot_reach(uri):
    with pytest.raises(ConfigError) as err:
        check_remote_tracking_uri(uri)
    assert "http://" in str(err.value) and "mlflow server" in str(err.value)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org"])
def test_ray_accepts_a_tracking_server(uri):
    check_remote_tracking_uri(uri)


def test_ray_prepare_refuses_sqlite_before_importing_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # importing ray would raise ImportError
    with pytest.raises(ConfigError, match="not reachable from Ray workers"):
        RayExecutor("127.0.0.1:1").prepare(study(), "sqlite:///x.db")


def test_make_executor():
    assert isinstance(make_executor(study().executor), LocalExecutor)
    spec = validate_study({**STUDY, "executor": {"kind": "ray", "address": "auto"}})
    executor = make_executor(spec.executor)
    assert isinstance(executor, RayExecutor) and executor.address == "auto"
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor(validate_study({**STUDY, "executor": {"address": "auto"}}).executor)


def test_cli_refuses_ray_with_sqlite(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    code = main(["--tracking-uri", f"sqlite:///{tmp_path}/m.db", "run", str(path), "--executor", "ray",
                 "--address", "127.0.0.1:1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not reachable from Ray workers" in err and "--executor local" in " ".join(err.split())
    assert not (tmp_path / "m.db").exists()  # refused before anything was logged


def _loader(seed: int) -> StudyData:
    ds = TensorDataset(torch.arange(40.0).unsqueeze(1), torch.arange(40))
    train = DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return StudyData(split=None, train=train, test=train)  # type: ignore[arg-type]


def _order(loader: DataLoader) -> list[int]:
    return [int(y) for _, ys in loader for y in ys]


def test_reset_data_order_gives_every_recipe_the_fresh_shuffle():
    fresh = _order(_loader(7).train)
    data = _loader(7)
    _order(data.train)  # the baseline's training consumed one epoch
    assert _order(data.train) != fresh  # without a reset the next recipe would see another order
    reset_data_order(data, 7)
    assert _order(data.train) == fresh


def test_local_executor_calls_each_recipe_in_order_with_a_fresh_shuffle():
    spec = validate_study({**STUDY, "recipes": [{"name": "a", "technique": "ptq"}, {"name": "b", "technique": "fp16"}]})
    data = _loader(spec.seed)
    fresh = _order(_loader(spec.seed).train)
    seen = []

    def run_recipe(recipe, spec_, data_, baseline, base_report, progress):
        seen.append((recipe.name, _order(data_.train), baseline, base_report, progress))
        return recipe.name

    job = StudyJob(spec, data, "model", "report", "parent", "1", "sqlite:///x", False)  # type: ignore[arg-type]
    assert LocalExecutor().run_recipes(job, spec.recipes, run_recipe) == ["a", "b"]
    assert [s[0] for s in seen] == ["a", "b"]
    for _, order, baseline, report, progress in seen:
        assert order == fresh and (baseline, report, progress) == ("model", "report", False)
