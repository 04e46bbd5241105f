"""Machine-readable output (``--format json``), ``--version`` and the exit codes of ``netzip``."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

import netzip_mlflow
from netzip_mlflow.cli.main import main
from netzip_mlflow.cli.output import EXIT_USAGE, write_json
from netzip_mlflow.compression.registry import list_techniques
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.tracking import keys


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"netzip-mlflow {netzip_mlflow.__version__}"


def test_techniques_as_json(capsys):
    assert main(["techniques", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == [s.name for s in list_techniques()]
    for spec, shown in zip(list_techniques(), listed):
        assert [(p["name"], p["default"]) for p in shown["params"]] == [(p.name, p.default) for p in spec.params]
    assert all(p["help"] and p["type"] in ("bool", "int", "float", "str") for t in listed for p in t["params"])


def test_usage_and_input_errors_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["run"])  # argparse: the study is missing
    assert done.value.code == EXIT_USAGE == 2
    assert main(["run", str(tmp_path / "missing.yaml")]) == EXIT_USAGE
    assert "missing.yaml" in capsys.readouterr().err


def test_json_is_strict(capsys):
    write_json({"nan": float("nan"), "inf": float("inf"), "n": torch.tensor(3).numpy(), "ok": 1.5})
    assert json.loads(capsys.readouterr().out) == {"nan": None, "inf": None, "n": 3, "ok": 1.5}


@pytest.mark.slow
def test_evaluate_as_json(capsys, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = tmp_path / "model.pt"
    torch.save(build_model("tiny_cnn", 10, (1, 8, 8), seed=0).state_dict(), path)
    code = main(["--tracking-uri", uri, "evaluate", str(path), "--data", "digits", "--arch", "tiny_cnn",
                 "--no-isolate", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    run = MlflowClient(uri).get_run(out["run_id"])
    assert out["metrics"][keys.TOP1] == pytest.approx(run.data.metrics[keys.TOP1])
    assert out["units"][keys.LATENCY_MS] == keys.METRICS[keys.LATENCY_MS].unit
    assert out["tags"][keys.TAG_ROLE] == "baseline"
