"""Bring your own model and read honest numbers: a torchvision state_dict in a study, OCS withheld at
chance, trust notes, and a study column when an experiment holds several studies."""

from __future__ import annotations

import io
import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from netzip_mlflow.cli.main import main
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

FAST_EVAL = {
    "isolate": False, "idle_s": 0.0, "system_metrics": False,
    "latency": {"warmup_s": 0.02, "budget_s": 0.2, "min_samples": 5},
}


@pytest.fixture
def tracking(tmp_path):
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    yield uri, MlflowClient(uri)
    mlflow.set_tracking_uri(previous)


def _image_folder(root, classes=3, per_class=20, size=32):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}


def test_a_torchvision_mobilenet_state_dict_runs_and_an_untrained_baseline_gets_no_ocs(tmp_path, tracking, capsys, caplog):
    uri, client = tracking
    torch.manual_seed(0)
    weights = tmp_path / "mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(), weights)
    study = {
        "study": "mobile", "experiment": "own-model",
        "data": {"path": str(_image_folder(tmp_path / "images")), "image_size": 32, "batch_size": 16},
        "model": {"arch": "mobilenet_v3_small", "path": str(weights)},
        "evaluation": FAST_EVAL,
        "recipes": [{"name": "prune_half", "technique": "prune_unstructured", "params": {"amount": 0.5}}],
    }
    path = tmp_path / "mobile.yaml"
    path.write_text(yaml.safe_dump(study))
    with caplog.at_level(logging.WARNING):
        code = main(["--tracking-uri", uri, "run", str(path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = _runs(client, "own-model")
    base, pruned = runs["baseline"], runs["prune_half"]
    params = base.data.params
    assert params["model.arch"] == "mobilenet_v3_small" and params["model.format"] == "state_dict"
    assert params["model.class"] == "torchvision.models.mobilenetv3.MobileNetV3"
    assert params["model.source"] == str(weights) and params["train.epochs"] == "0"  # loaded: not trained
    assert int(params["model.params"]) == sum(p.numel() for p in torchvision.models.mobilenet_v3_small(num_classes=3).parameters())
    # an untrained network is at chance: no ratios, no OCS, the reason tagged and said once
    assert keys.OCS not in pruned.data.metrics and keys.RATIO_PERFORMANCE not in pruned.data.metrics
    assert "not above chance" in pruned.data.tags[keys.TAG_OCS_WITHHELD]
    warned = [r for r in caplog.records if "withheld" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "--score-at-chance" in warned[0].getMessage()
    assert "OCS withheld" in out  # the caveat under the printed leaderboard
    assert "→ baseline: measuring" in out and "recipe 1 of 1: prune_half" in out  # phase lines
    experiment = client.get_experiment_by_name("own-model")
    assert experiment.tags[keys.EXPERIMENT_KIND_TAG] == keys.EXPERIMENT_KIND


def test_a_timm_saved_state_dict_runs_by_its_timm_name(tmp_path, tracking, capsys):
    timm = pytest.importorskip("timm")
    uri, client = tracking
    torch.manual_seed(0)
    weights = tmp_path / "resnet10t.pt"
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=3).state_dict(), weights)
    study = {
        "study": "timm", "experiment": "own-timm",
        "data": {"path": str(_image_folder(tmp_path / "images")), "image_size": 32, "batch_size": 16},
        "model": {"arch": "timm/resnet10t", "path": str(weights)},
        "evaluation": {**FAST_EVAL, "ratios": {"score_at_chance": True}},
        "recipes": [{"name": "prune_half", "technique": "prune_unstructured", "params": {"amount": 0.5}}],
    }
    path = tmp_path / "timm.yaml"
    path.write_text(yaml.safe_dump(study))
    code = main(["--tracking-uri", uri, "run", str(path), "--no-progress"])
    assert code == 0, capsys.readouterr().out
    runs = _runs(client, "own-timm")
    params = runs["baseline"].data.params
    assert params["model.arch"] == "timm/resnet10t" and params["model.format"] == "state_dict"
    assert params["model.class"] == "timm.models.resnet.ResNet"
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    total = sum(p.numel() for p in reference.parameters())
    assert int(params["model.params"]) == total
    assert runs["prune_half"].info.status == "FINISHED"
    # half of the Conv/Linear weights zeroed, over all parameters (BN and biases stay)
    prunable = sum(m.weight.numel() for m in reference.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert runs["prune_half"].data.metrics[keys.SPARSITY] == pytest.approx(0.5 * prunable / total, abs=1e-3)


def test_trust_notes_and_a_study_column_across_two_studies(tmp_path, tracking, capsys):
    uri, client = tracking
    evaluation = {**FAST_EVAL, "latency": {**FAST_EVAL["latency"], "target_ci_rel": 1e-6}}  # cannot be met
    for name in ("first", "second"):
        study = {
            "study": name, "experiment": "two-studies",
            "data": {"builtin": "digits", "limit": 300, "batch_size": 32},
            "model": {"arch": "tiny_cnn", "train": {"epochs": 3, "lr": 0.1}},
            "evaluation": evaluation,
            "recipes": [
                {"name": "prune_a", "technique": "prune_unstructured", "params": {"amount": 0.2}},
                {"name": "prune_b", "technique": "prune_unstructured", "params": {"amount": 0.3}},
            ],
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study))
        code = main(["--tracking-uri", uri, "run", str(path), "--no-progress", "--score-at-chance",
                     "--set", "recipes[1].params.amount=0.5"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "latency CI target missed" in out  # the trust note in the end-of-run summary
    runs = _runs(client, "two-studies")
    assert runs["prune_b"].data.params["recipe.amount"] == "0.5"  # the bracket form of --set worked
    study_run = next(r for r in client.search_runs([client.get_experiment_by_name("two-studies").experiment_id])
                     if r.data.tags.get(keys.TAG_ROLE) == keys.ROLE_STUDY)
    csv = client.download_artifacts(study_run.info.run_id, "leaderboard/leaderboard.csv", str(tmp_path))
    board = pd.read_csv(csv)
    assert board.loc[0, "role"] == "baseline" and board.loc[0, "rank"] == 0
    assert board["trust"].fillna("").str.contains("latency CI target missed").all()
    html = (tmp_path / "page.html")
    html.write_text(open(client.download_artifacts(study_run.info.run_id, "leaderboard/leaderboard.html", str(tmp_path))).read())
    assert '<meta charset="utf-8">' in html.read_text()
    assert "leaderboard/leaderboard_table.json" in [a.path for a in client.list_artifacts(study_run.info.run_id, "leaderboard")]

    code = main(["--tracking-uri", uri, "leaderboard", "--experiment", "two-studies", "--format", "csv"])
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert code == 0 and set(table["study"]) == {"first", "second"}
    code = main(["--tracking-uri", uri, "leaderboard", "--experiment", "two-studies"])
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if "recipe" in line and "#" in line)
    assert "study" in header  # shown because the selection spans two studies
