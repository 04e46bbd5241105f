"""End to end through the CLI: a tiny study into a temporary SQLite store, then the leaderboard."""

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from netzip_mlflow.cli.main import main
from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

STUDY = {
    "study": "tiny",
    "experiment": "netzip-tiny",
    "seed": 0,
    "data": {"builtin": "digits", "limit": 300, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 3, "lr": 0.1}},
    # 3 epochs on 240 8x8 images can leave the tiny CNN near chance (then ratios are withheld); these
    # tests check the layout and the formulas, so they score at chance explicitly
    "evaluation": {"idle_s": 0.2, "latency": {"warmup_s": 0.1, "budget_s": 0.5}, "ratios": {"score_at_chance": True}},
    "recipes": [
        {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 2}},
        {"name": "gup_l1_50", "technique": "prune_unstructured", "params": {"importance": "l1", "amount": 0.5}},
        {"name": "gup_l1_80", "technique": "prune_unstructured", "params": {"importance": "l1", "amount": 0.8}},
        {"name": "structured_50", "technique": "prune_structured", "params": {"importance": "l1", "amount": 0.5}},
        {"name": "impossible", "technique": "prune_structured", "params": {"amount": 0.99}},
    ],
}
REQUIRED = {
    keys.TOP1, keys.TOP5, keys.F1_MACRO, keys.PRECISION_MICRO, keys.LATENCY_MS, keys.LATENCY_CI95_REL,
    keys.THROUGHPUT, keys.MACS, keys.MACS_EFFECTIVE, keys.CHATS, keys.DISK_MB, keys.DISK_MB_GZIP,
    keys.PARAMS, keys.PARAMS_NONZERO, keys.SPARSITY, keys.CPU_UTIL, keys.RAM_PEAK, keys.IDLE_POWER,
}
COMPRESSED_ONLY = {keys.AGREEMENT, keys.RATIO_PERFORMANCE, keys.RATIO_SPEEDUP, keys.RATIO_COMPRESSION, keys.OCS, keys.CIE_CLASSES, keys.CIE_IMAGES}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    uri = f"sqlite:///{tmp}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    code = main(["--tracking-uri", uri, "run", str(path), "--no-progress"])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("netzip-tiny")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
    yield code, uri, client, runs
    mlflow.set_tracking_uri(previous)


def test_failed_recipe_fails_the_command_but_not_the_study(study):
    code, _, _, runs = study
    assert code == 1
    bad = runs["impossible"]
    assert bad.info.status == "FAILED"
    assert bad.data.tags[keys.TAG_ERROR].startswith("CompressionError")
    for name in ("baseline", "ptq_int8", "gup_l1_50", "structured_50"):
        assert runs[name].info.status == "FINISHED", name


def test_run_layout_tags_and_metric_keys(study):
    _, _, client, runs = study
    assert set(runs) == {"tiny", "baseline", "ptq_int8", "gup_l1_50", "gup_l1_80", "structured_50", "impossible"}
    parent, base = runs["tiny"], runs["baseline"]
    assert parent.data.tags[keys.TAG_ROLE] == "study"
    assert base.data.tags[keys.TAG_ROLE] == "baseline"
    assert REQUIRED <= set(base.data.metrics)
    for name in ("ptq_int8", "gup_l1_50", "structured_50"):
        run = runs[name]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags[keys.TAG_ROLE] == "compressed" and tags[keys.TAG_STUDY] == "tiny"
        assert tags[keys.TAG_BASELINE_RUN] == base.info.run_id
        assert tags[keys.TAG_RECIPE] == name
        assert tags[keys.ratio_metric_tag("speedup")] == keys.CHATS
        assert tags[keys.TAG_ENERGY_METER]
        assert tags["netzip.hw.id"] == base.data.tags["netzip.hw.id"]
        assert (REQUIRED | COMPRESSED_ONLY) <= set(run.data.metrics), name
        history = client.get_metric_history(run.info.run_id, keys.TOP1)
        assert len(history) == 1  # logged once
    assert runs["gup_l1_50"].data.params["recipe.amount"] == "0.5"
    assert len(client.get_metric_history(base.info.run_id, "train/loss")) == 3  # one per epoch


def test_compressed_numbers_make_sense(study):
    _, _, _, runs = study
    base = runs["baseline"].data.metrics
    ptq = runs["ptq_int8"].data.metrics
    gup = runs["gup_l1_50"].data.metrics
    st = runs["structured_50"].data.metrics
    assert ptq[keys.MACS] == base[keys.MACS]
    assert ptq[keys.CHATS] == pytest.approx(base[keys.CHATS] / 4)
    assert ptq[keys.RATIO_SPEEDUP] == pytest.approx(4.0)
    assert ptq[keys.DISK_MB] < base[keys.DISK_MB] / 2
    assert gup[keys.MACS] == base[keys.MACS] and gup[keys.MACS_EFFECTIVE] < 0.6 * base[keys.MACS]
    assert gup[keys.SPARSITY] > 0.45
    assert st[keys.PARAMS] < 0.55 * base[keys.PARAMS]
    assert st[keys.MACS] < base[keys.MACS]
    for run in (ptq, gup, st):
        p = run[keys.RATIO_PERFORMANCE]
        s, c = run[keys.RATIO_SPEEDUP], run[keys.RATIO_COMPRESSION]
        e = run.get(keys.RATIO_EFFICIENCY, 1.0)
        assert run[keys.OCS] == pytest.approx(p * p * ((p - 1) + (s - 1) + (c - 1) + (e - 1)))


def test_logged_model_reloads_to_the_same_accuracy(study):
    _, uri, _, runs = study
    split = load_builtin("digits", test_fraction=0.2, seed=0, limit=300)
    x, y = split.test.tensors
    for name in ("baseline", "ptq_int8", "structured_50"):
        model = mlflow.pytorch.load_model(f"runs:/{runs[name].info.run_id}/model")
        with torch.no_grad():
            acc = float((model(x).argmax(1) == y).float().mean())
        assert acc == pytest.approx(runs[name].data.metrics[keys.TOP1]), name


def test_leaderboard_cli_ranks_the_compressed_runs(study):
    _, uri, _, runs = study
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--tracking-uri", uri, "leaderboard", "--experiment", "netzip-tiny", "--format", "json"]) == 0
    rows = json.loads(out.getvalue())
    rows = rows if isinstance(rows, list) else rows.get("rows", rows)
    board = pd.DataFrame(rows)
    base = board[board["role"] == "baseline"]
    assert len(base) == 1 and base.iloc[0]["rank"] == 0 and base.iloc[0]["run_id"] == runs["baseline"].info.run_id
    board = board[board["role"] == "compressed"].reset_index(drop=True)
    assert len(board) == 4
    assert board["ocs"].is_monotonic_decreasing
    assert set(board["recipe"]) == {"ptq_int8", "gup_l1_50", "gup_l1_80", "structured_50"}
    top = runs[board.iloc[0]["recipe"]].data.metrics[keys.OCS]
    assert board.iloc[0]["ocs"] == pytest.approx(top)


def test_study_run_has_leaderboard_and_plots(study):
    _, _, client, runs = study
    parent = runs["tiny"].info.run_id
    files = {a.path for folder in ("plots", "leaderboard") for a in client.list_artifacts(parent, folder)}
    assert {"plots/radar.png", "plots/ocs_bars.png", "plots/accuracy_latency_bubbles.png", "leaderboard/leaderboard.csv"} <= files
    assert "plots/impact_vs_sparsity.png" in files  # two strengths of prune_unstructured: a sweep
    compressed = runs["ptq_int8"].info.run_id
    impact = {a.path for a in client.list_artifacts(compressed, "class_impact")}
    assert "class_impact/per_class.csv" in impact and "class_impact/confusion_matrices.png" in impact
    structured = {a.path for a in client.list_artifacts(runs["structured_50"].info.run_id, "class_impact")}
    assert "class_impact/exemplars.png" in structured  # a 50 % pruned model disagrees somewhere
    ops = client.download_artifacts(compressed, "ops/per_layer.csv")
    table = pd.read_csv(ops)
    assert table["macs"].sum() == runs["ptq_int8"].data.metrics[keys.MACS]
    assert set(np.unique(table.loc[table["macs"] > 0, "bits"])) == {8}


def test_run_as_json_lists_every_run_and_exits_1_for_the_failed_recipe(study, capsys):
    """Run again with --format json: it resumes (finished runs reused) and reports each recipe."""
    _, uri, _, runs = study
    tmp = Path(uri.removeprefix("sqlite:///")).parent
    code = main(["--tracking-uri", uri, "run", str(tmp / "tiny.yaml"), "--no-progress", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["study_run_id"] == runs["tiny"].info.run_id and out["resumed"] is True
    status = {o["recipe"]: o["status"] for o in out["outcomes"]}
    assert status["impossible"] == "FAILED" and status["ptq_int8"] == "FINISHED"
    reused = {o["recipe"]: o["run_id"] for o in out["outcomes"] if o["reused"]}
    assert reused["ptq_int8"] == runs["ptq_int8"].info.run_id
