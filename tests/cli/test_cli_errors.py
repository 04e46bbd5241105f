"""Bad inputs: each prints one line ``error: ...`` naming the problem and the fix, and exits 2.

Everything here fails before the tracking store is written to (config, data and model are checked
first), except the unreachable tracking server, which fails after bounded retries.
"""

from __future__ import annotations

import copy

import mlflow
import pytest
import torch
import yaml
from torch import nn

from netzip_mlflow.cli.main import main
from netzip_mlflow.models.zoo import build_model

BASE = {
    "study": "bad",
    "seed": 0,
    "data": {"builtin": "digits", "limit": 100, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 0}},
    "evaluation": {"isolate": False, "idle_s": 0.0},
    "recipes": [{"name": "q", "technique": "ptq"}],
}


def _study(tmp_path, **changes):
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def run(tmp_path, capsys):
    """``run(path, *extra_args)`` -> (exit code, stderr); fails if stdout or the store got anything."""
    previous = mlflow.get_tracking_uri()
    store = tmp_path / "mlflow.db"

    def _run(path, *extra, uri=None):
        code = main(["--tracking-uri", uri or f"sqlite:///{store}", "run", str(path), "--no-progress", *extra])
        out = capsys.readouterr()
        return code, out.err

    yield _run
    mlflow.set_tracking_uri(previous)
    assert not store.exists(), "a bad input must fail before anything is logged"


def _save_module(path, module):
    torch.save(module, path)
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


CASES = {
    # id: (changes to the study, CLI args, fragments the message must contain)
    "unknown technique": ({"recipes": [{"name": "q", "technique": "zip_it"}]}, [], ["recipes[0].technique", "unknown technique 'zip_it'", "known techniques: ptq"]),
    "unknown parameter": ({"recipes": [{"name": "q", "technique": "ptq", "params": {"speed": 2}}]}, [], ["recipes[0].params.speed", "unknown parameter", "known parameters: "]),
    "amount out of range": ({"recipes": [{"name": "p", "technique": "prune_unstructured", "params": {"amount": 1.5}}]}, [], ["recipes[0].params.amount", "must be in (0, 1), got 1.5"]),
    "wrong parameter type": ({"recipes": [{"name": "p", "technique": "prune_unstructured", "params": {"amount": "half"}}]}, [], ["recipes[0].params.amount", "must be a number", "'half' (str)"]),
    "bad override": ({}, ["--set", "recipes.0.params.calibration_batches=-1"], ["recipes[0].params.calibration_batches", "must be"]),
}


@pytest.mark.parametrize("case", CASES)
def test_config_errors(case, tmp_path, run):
    changes, args, fragments = CASES[case]
    code, err = run(_study(tmp_path, **changes), *args)
    line = _one_error_line(err)
    assert code == 2
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_dataset_path_missing(tmp_path, run):
    code, err = run(_study(tmp_path, data={"path": str(tmp_path / "nowhere"), "channels": 1, "image_size": 8}))
    line = _one_error_line(err)
    assert code == 2 and "data.path" in line and "does not exist" in line and "ImageFolder" in line


def test_dataset_path_empty(tmp_path, run):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    code, err = run(_study(tmp_path, data={"path": str(tmp_path / "images"), "channels": 1, "image_size": 8}))
    line = _one_error_line(err)
    assert code == 2 and "data.path" in line and "holds no images" in line and "root/<class name>/<image>" in line


def test_corrupt_and_truncated_model_files(tmp_path, run):
    good = tmp_path / "good.pt"
    torch.save(build_model("tiny_cnn", 10, (1, 8, 8)).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file at all\n" * 10)
    for file in (truncated, garbage):
        code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(file)}))
        line = _one_error_line(err)
        assert code == 2 and str(file.name) in line and "corrupt or truncated" in line and "torch.save" in line


def test_model_file_for_other_classes(tmp_path, run):
    five = tmp_path / "five.pt"
    torch.save(build_model("tiny_cnn", 5, (1, 8, 8)).state_dict(), five)
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(five)}))
    line = _one_error_line(err)
    assert code == 2 and "does not fit the architecture TinyCNN" in line and "size mismatch for classifier.weight" in line


def test_whole_module_needs_trust(tmp_path, run):
    path = _save_module(tmp_path / "whole.pt", nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}))
    line = _one_error_line(err)
    assert code == 2 and "--trust-model-file" in line and "can run code" in line


def test_labels_out_of_range_for_the_model(tmp_path, run):
    path = _save_module(tmp_path / "five.pt", nn.Sequential(nn.Flatten(), nn.Linear(64, 5)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}), "--trust-model-file")
    line = _one_error_line(err)
    assert code == 2 and "has 5 outputs but the data has 10 classes" in line and "num_classes" in line


def test_input_shape_mismatch(tmp_path, run):
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    path = _save_module(tmp_path / "rgb.pt", rgb)
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}), "--trust-model-file")
    line = _one_error_line(err)
    assert code == 2 and "fails on data of shape (20, 1, 8, 8)" in line and "data.channels" in line


def test_output_not_logits(tmp_path, run):
    path = _save_module(tmp_path / "maps.pt", nn.Sequential(nn.Conv2d(1, 10, 3)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path), "trust_model_file": True}))
    line = _one_error_line(err)
    assert code == 2 and "logits of shape (batch, classes)" in line and "(20, 10, 6, 6)" in line


def test_unreachable_tracking_server(tmp_path, run, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code, err = run(_study(tmp_path), uri="http://127.0.0.1:9")
    line = _one_error_line(err)
    assert code == 2 and "http://127.0.0.1:9" in line and "MLFLOW_TRACKING_URI" in line
