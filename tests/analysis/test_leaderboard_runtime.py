"""The leaderboard's runtime column and the by-runtime view (the paper's case study 2 table)."""

from __future__ import annotations

import time

import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis import leaderboard as lb
from netzip_mlflow.tracking import keys


def _log(client: MlflowClient, exp: str, tags: dict, metrics: dict) -> str:
    run = client.create_run(exp, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_runtime_column_and_best_run_per_runtime(tmp_path, capsys) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("rt")
    hw = {lb.TAG_HW_ID: "pc01", lb.TAG_HW_CPU: "Intel i7"}
    base = _log(client, exp, {keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: "cs2",
                              keys.TAG_RUNTIME: "torch", **hw},
                {keys.TOP1: 0.9, keys.LATENCY_MS: 10.0, keys.OCS: 0.0})
    rows = [  # recipe, technique, runtime, ocs, latency
        ("ptq", "ptq", "torch", 3.0, 4.0),
        ("onnx_fp32", "onnx", "onnxruntime", 1.5, 6.0),
        ("onnx_int8", "onnx", "onnxruntime", 4.0, 3.0),
        ("openvino_int8", "openvino", "openvino", 5.0, 2.5),
        ("old_run", "ptq", None, 2.0, 5.0),  # logged before runtimes were recorded
    ]
    for recipe, technique, runtime, ocs, latency in rows:
        tags = {keys.TAG_ROLE: keys.ROLE_COMPRESSED, keys.TAG_STUDY: "cs2", keys.TAG_RECIPE: recipe,
                keys.TAG_TECHNIQUE: technique, keys.TAG_BASELINE_RUN: base, **hw}
        if runtime:
            tags[keys.TAG_RUNTIME] = runtime
        _log(client, exp, tags, {keys.TOP1: 0.9, keys.LATENCY_MS: latency, keys.OCS: ocs})

    board = lb.leaderboard("rt", tracking_uri=uri)
    assert list(board.columns[:9]) == [
        "rank", "run_id", "status", "role", "study", "seed", "recipe", "technique", "runtime"]
    by_recipe = board.set_index("recipe")["runtime"]
    assert by_recipe["onnx_int8"] == "onnxruntime" and pd.isna(by_recipe["old_run"])

    table = lb.leaderboard_by_runtime("rt", tracking_uri=uri)
    label = "Intel i7 [pc01]"
    assert list(table.index) == [(label, "openvino"), (label, "onnxruntime"), (label, "torch"),
                                 (label, "unrecorded")]
    assert table.loc[(label, "onnxruntime"), "recipe"] == "onnx_int8"  # the best of the two
    assert table.loc[(label, "openvino"), keys.LATENCY_MS] == 2.5
    assert table.loc[(label, "torch"), keys.OCS] == 3.0

    from netzip_mlflow.cli.main import main

    assert main(["--tracking-uri", uri, "leaderboard", "--experiment", "rt", "--by", "runtime",
                 "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hardware,runtime,recipe,technique,ocs")
    assert out[1].split(",")[:3] == [label, "openvino", "openvino_int8"]
