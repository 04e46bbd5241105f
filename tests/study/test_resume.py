"""Resume after SIGKILL in the middle of a recipe: orphan KILLED, finished runs reused, no duplicates."""

from __future__ import annotations

import signal
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.leaderboard import leaderboard
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

RECIPES = [
    {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
    {"name": "stalls", "technique": "test_sleep"},
    {"name": "gup_50", "technique": "prune_unstructured", "params": {"amount": 0.5}},
]


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id])


def _by_name(runs):
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags.get("mlflow.runName"), []).append(run)
    return out


def test_sigkill_then_resume(study_file, cli, cli_popen, tmp_path):
    path = study_file("resumable", recipes=RECIPES)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    proc = cli_popen("--tracking-uri", uri, "run", str(path), "--no-progress", NETZIP_TEST_SLEEP_S="300")
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            stalled = _by_name(_runs(client, "netzip-tiny-rel")).get("stalls")
            if stalled and stalled[0].info.status == "RUNNING":
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        else:
            pytest.fail("the stalling recipe never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    before = _by_name(_runs(client, "netzip-tiny-rel"))
    assert before["stalls"][0].info.status == "RUNNING"  # left behind by the killed process
    assert before["ptq_int8"][0].info.status == "FINISHED"
    assert "gup_50" not in before
    baseline_id = before["baseline"][0].info.run_id
    ptq_id = before["ptq_int8"][0].info.run_id
    orphan_id = before["stalls"][0].info.run_id

    done = cli("--tracking-uri", uri, "run", str(path), "--no-progress", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Resumed study run" in done.stdout and "1 interrupted runs marked KILLED" in done.stdout

    after = _by_name(_runs(client, "netzip-tiny-rel"))
    assert [r.info.run_id for r in after["baseline"]] == [baseline_id]  # reused, not retrained
    assert [r.info.run_id for r in after["ptq_int8"]] == [ptq_id]  # reused
    assert len(after["resumable"]) == 1 and after["resumable"][0].info.status == "FINISHED"
    orphan = client.get_run(orphan_id)
    assert orphan.info.status == "KILLED" and "Interrupted" in orphan.data.tags[keys.TAG_ERROR]
    assert sorted(r.info.status for r in after["stalls"]) == ["FINISHED", "KILLED"]
    assert [r.info.status for r in after["gup_50"]] == ["FINISHED"]
    for run in (*after["stalls"], *after["gup_50"]):
        assert run.data.tags[keys.TAG_BASELINE_RUN] == baseline_id
        assert run.data.tags["mlflow.parentRunId"] == after["resumable"][0].info.run_id

    board = leaderboard("netzip-tiny-rel", study="resumable", tracking_uri=uri)
    assert sorted(board["recipe"]) == ["gup_50", "ptq_int8", "stalls"]  # each recipe once
    logged = client.download_artifacts(after["resumable"][0].info.run_id, "leaderboard/leaderboard.csv")
    logged_board = pd.read_csv(logged)
    assert sorted(logged_board.loc[logged_board["role"] == "compressed", "recipe"]) == ["gup_50", "ptq_int8", "stalls"]
    assert logged_board.loc[0, "recipe"] == "baseline"  # row 0
