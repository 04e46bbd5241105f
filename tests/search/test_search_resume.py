"""A search killed in the middle of a trial resumes: finished trials kept, numbering goes on, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "tests" / "study"  # netzip_test_plugin: test_stall_after
CLI = "import sys, netzip_test_plugin\nfrom netzip_mlflow.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
STUDY = {
    "study": "resumable_search",
    "experiment": "netzip-resume-search",
    "data": {"builtin": "digits", "limit": 120, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 1, "lr": 0.1}},
    "evaluation": {"isolate": False, "idle_s": 0.0, "system_metrics": False,
                   "latency": {"warmup_s": 0.02, "budget_s": 0.2, "min_samples": 5}},
    "search": {
        "recipes": [{"name": "gup", "steps": [
            {"technique": "prune_unstructured", "params": {"amount": {"low": 0.1, "high": 0.6}}},
            {"technique": "test_stall_after"},
        ]}],
        "objective": "accuracy/top1",
        "n_trials": 3,
        "seed": 0,
    },
}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(PLUGIN_DIR), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _runs(client: MlflowClient) -> dict[str, list]:
    exp = client.get_experiment_by_name("netzip-resume-search")
    out: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id]) if exp else []:
        out.setdefault(run.info.run_name, []).append(run)
    return out


def test_kill_mid_trial_then_resume(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [sys.executable, "-c", CLI, "--tracking-uri", uri, "search", str(path), "--no-progress"]
    # each trial calls the technique twice: to compress, and once more when its logged weights are
    # checked to rebuild (tracking.stored_model); so the third call, trial 1's compression, stalls
    proc = subprocess.Popen(args, env=_env(NETZIP_TEST_STALL_AFTER="2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 1800  # generous: a busy machine is slow, never a failure
        while time.monotonic() < deadline:
            runs = _runs(client)
            if runs.get("trial_0001") and runs["trial_0001"][0].info.status == "RUNNING":
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        else:
            pytest.fail("trial 1 never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    before = _runs(client)
    assert before["trial_0000"][0].info.status == "FINISHED"
    first_trial_run = before["trial_0000"][0].info.run_id
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (name,) = optuna.get_all_study_names(storage)
    states = [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]
    assert states == ["COMPLETE", "RUNNING"]

    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming search" in done.stderr and "1 of 3 trials done" in done.stderr

    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    after = _runs(client)
    assert [r.info.run_id for r in after["trial_0000"]] == [first_trial_run]  # kept, not re-run
    assert [r.info.status for r in after["trial_0001"]] == ["KILLED"]
    for name_ in ("trial_0002", "trial_0003"):
        assert [r.info.status for r in after[name_]] == ["FINISHED"]
    assert len(after["resumable_search"]) == 1 and len(after["baseline"]) == 1  # parent and baseline reused
    parent = after["resumable_search"][0]
    for name_ in ("trial_0000", "trial_0002", "trial_0003"):
        run = after[name_][0]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[keys.TAG_BASELINE_RUN] == after["baseline"][0].info.run_id
