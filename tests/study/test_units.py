"""Fast checks of the reliability pieces: retries, config hashes, output checks, safe names and loading."""

from __future__ import annotations

import copy
import pathlib

import pytest
import torch
import torchvision
from torch import nn

from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.errors import ConfigError, DataError, ModelError
from netzip_mlflow.models.loading import load_model_file
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study import store
from netzip_mlflow.study.checks import check_model_outputs
from netzip_mlflow.study.resume import baseline_hash, recipe_hash
from netzip_mlflow.study.runner import error_message, safe_name

RAW = {
    "study": "u",
    "data": {"builtin": "digits", "limit": 100},
    "model": {"arch": "tiny_cnn"},
    "recipes": [{"name": "p", "technique": "prune_unstructured", "params": {"amount": 0.5}}],
}


def _spec(**changes):
    raw = copy.deepcopy(RAW)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return validate_study(raw)


# ---------------------------------------------------------------------------- retries on a locked store


def test_retry_locked_retries_transient_errors_only(monkeypatch):
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert store.retry_locked(flaky) == "done" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such run")

    calls.clear()
    with pytest.raises(ValueError):
        store.retry_locked(broken)
    assert len(calls) == 1  # not transient: no retry

    def always_locked():
        calls.append(1)
        raise RuntimeError("database is locked")

    calls.clear()
    with pytest.raises(RuntimeError):
        store.retry_locked(always_locked, attempts=4)
    assert len(calls) == 4  # bounded


def test_transient_error_found_in_the_cause_chain():
    try:
        try:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        except RuntimeError as inner:
            raise ValueError("API request failed") from inner
    except ValueError as outer:
        assert store.is_transient(outer)
    assert not store.is_transient(ValueError("connection refused"))


# ---------------------------------------------------------------------------- config hashes


def test_baseline_hash_covers_what_the_numbers_depend_on():
    base = baseline_hash(_spec())
    assert baseline_hash(_spec()) == base  # stable across processes: no id() or dict order inside
    assert baseline_hash(_spec(seed=1)) != base
    assert baseline_hash(_spec(data__limit=200)) != base
    assert baseline_hash(_spec(model={"arch": "tiny_cnn", "train": {"epochs": 3}})) != base
    assert baseline_hash(_spec(evaluation={"threads": 2})) != base
    # not measured: OCS weights, trust flag, system metrics switch, the recipes
    assert baseline_hash(_spec(evaluation={"ratios": {"weights": [2, 1, 1, 1]}, "system_metrics": False})) == base
    assert baseline_hash(_spec(model={"arch": "tiny_cnn", "trust_model_file": True})) == base
    assert baseline_hash(_spec(recipes=[{"name": "q", "technique": "ptq"}])) == base


def test_recipe_hash_uses_resolved_params():
    spec = _spec()
    (recipe,) = spec.recipes
    explicit = _spec(recipes=[{"name": "p", "technique": "prune_unstructured", "params": dict(recipe.params)}])
    assert recipe_hash(explicit.recipes[0], "b") == recipe_hash(recipe, "b")  # defaults filled in = same
    other = _spec(recipes=[{"name": "p", "technique": "prune_unstructured", "params": {"amount": 0.6}}])
    assert recipe_hash(other.recipes[0], "b") != recipe_hash(recipe, "b")
    assert recipe_hash(recipe, "other-baseline") != recipe_hash(recipe, "b")


# ---------------------------------------------------------------------------- output checks


class _Const(nn.Module):
    def __init__(self, value: float, classes: int = 10) -> None:
        super().__init__()
        self.value, self.classes, self.w = value, classes, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.full((x.shape[0], self.classes), self.value) + self.w


def test_check_model_outputs():
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 9])
    check_model_outputs(build_model("tiny_cnn", 10, (1, 8, 8)), x, y, 10, "m")  # fine
    for value in (float("nan"), float("inf")):
        with pytest.raises(ModelError, match=r"m returns non-finite outputs \(NaN/Inf\) for 4 of 4 inputs"):
            check_model_outputs(_Const(value), x, y, 10, "m")
    with pytest.raises(ModelError, match="has 5 outputs but the data has 10 classes"):
        check_model_outputs(_Const(0.0, 5), x, y, 10, "m")
    with pytest.raises(DataError, match="labels range over 0..12"):
        check_model_outputs(_Const(0.0, 10), x, torch.tensor([0, 1, 2, 12]), 10, "m")
    with pytest.raises(ModelError, match=r"fails on data of shape \(4, 1, 8, 8\)"):
        check_model_outputs(build_model("tiny_cnn", 10, (3, 8, 8)), x, y, 10, "m")
    model = build_model("tiny_cnn", 10, (1, 8, 8)).train()
    check_model_outputs(model, x, y, 10, "m")
    assert model.training  # mode restored


# ---------------------------------------------------------------------------- names and messages


def test_safe_name_and_error_message():
    assert safe_name("ptq_int8-v1.2") == "ptq_int8-v1.2"
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("a b;rm -rf /") == "a_b_rm_-rf__"
    assert safe_name("..") == "_" and safe_name("") == "_"
    assert error_message(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert len(error_message(ValueError("x" * 2000))) == 500
    with pytest.raises(ConfigError, match="recipes.0..name"):
        validate_study({**RAW, "recipes": [{"name": "../evil", "technique": "ptq"}]})


# ---------------------------------------------------------------------------- safe loading


class _Evil:
    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_pickles_do_not_run_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weights": _Evil(marker)}, evil)
    with pytest.raises(ModelError, match="--trust-model-file"):
        load_model_file(evil, build_model("tiny_cnn", 10, (1, 8, 8)))
    assert not marker.exists()  # weights_only=True refused to call anything


def test_state_dict_and_trusted_module_load(tmp_path):
    model = build_model("tiny_cnn", 10, (1, 8, 8))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load_model_file(tmp_path / "sd.pt", build_model("tiny_cnn", 10, (1, 8, 8), seed=1))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    whole = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.save(whole, tmp_path / "whole.pt")
    with pytest.raises(ModelError, match="can run code"):
        load_model_file(tmp_path / "whole.pt", model)
    assert isinstance(load_model_file(tmp_path / "whole.pt", trust=True), nn.Sequential)


def test_a_torchvision_saved_resnet18_state_dict_loads_with_its_standard_stem(tmp_path):
    from netzip_mlflow.models.baseline import make_baseline

    saved = torchvision.models.resnet18(num_classes=4)
    torch.save(saved.state_dict(), tmp_path / "r18.pt")
    built = make_baseline("resnet18", 4, (3, 32, 32), path=tmp_path / "r18.pt")
    assert built.params["model.layout"] == "torchvision standard"
    assert built.params["model.format"] == "state_dict" and built.params["model.arch"] == "resnet18"
    assert built.model.conv1.kernel_size == (7, 7)
    assert all(torch.equal(a, b) for a, b in zip(built.model.state_dict().values(), saved.state_dict().values()))
    # our own small-image layout still loads into our layout
    ours = build_model("resnet18", 4, (3, 32, 32), seed=5)
    torch.save(ours.state_dict(), tmp_path / "ours.pt")
    again = make_baseline("resnet18", 4, (3, 32, 32), path=tmp_path / "ours.pt")
    assert again.params["model.layout"] == "netzip" and again.model.conv1.kernel_size == (3, 3)


def test_a_whole_module_is_described_by_its_class_not_the_default_arch(tmp_path):
    from netzip_mlflow.models.baseline import make_baseline

    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3), tmp_path / "whole.pt")
    built = make_baseline("resnet18", 3, (3, 32, 32), path=tmp_path / "whole.pt", trust=True)
    assert built.params["model.arch"] == "MobileNetV3"
    assert built.params["model.class"] == "torchvision.models.mobilenetv3.MobileNetV3"
    assert built.params["model.format"] == "whole module"
    assert int(built.params["model.params"]) == sum(p.numel() for p in built.model.parameters())


def test_loaded_models_default_to_no_training_unless_epochs_given():
    assert _spec(model={"arch": "tiny_cnn"}).model.train.epochs == 2
    assert _spec(model={"arch": "tiny_cnn", "path": "/x.pt"}).model.train.epochs == 0
    assert _spec(model={"arch": "tiny_cnn", "path": "/x.pt", "train": {"lr": 0.01}}).model.train.epochs == 0
    assert _spec(model={"arch": "tiny_cnn", "path": "/x.pt", "train": {"epochs": 3}}).model.train.epochs == 3
