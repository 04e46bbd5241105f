"""Hostile inputs that reach the store (issue #19): one writer per study, model code that exits or is
interrupted, no finite OCS, credentials in the tracking URI. Each checks the message, the exit code
and the runs left in the store."""

from __future__ import annotations

import os
import re
import signal
import time

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from netzip_mlflow.cli.main import main
from netzip_mlflow.errors import LeaseError
from netzip_mlflow.study.lease import FileLease, TagLease, lock_file
from netzip_mlflow.tracking import keys

EXPERIMENT = "netzip-tiny-rel"
MLFLOW_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+ mlflow[.a-z_]*: ")
NO_TRAIN = {"arch": "tiny_cnn", "train": {"epochs": 0}}


def _runs(uri: str) -> dict[str, object]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return {}
    return {r.data.tags["mlflow.runName"]: r for r in client.search_runs([experiment.experiment_id])}


def _lines(err: str) -> list[str]:
    """Our lines on stderr (MLflow's own log lines, timestamped, left out)."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip() and not MLFLOW_LOG.match(line)]


def test_second_run_of_a_held_study_says_who_holds_it(study_file, store, capsys):
    path = study_file("held", model=NO_TRAIN)
    holder = FileLease(lock_file(store, EXPERIMENT, "held"), "held")
    holder.acquire()
    try:
        code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    finally:
        holder.release()
    lines = _lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: study held is already being run by ")
    assert f"pid {os.getpid()}" in lines[0] and " since 20" in lines[0] and "UTC" in lines[0] and "resume" in lines[0]
    assert _runs(store) == {}  # nothing was written
    assert main(["--tracking-uri", store, "run", str(path), "--no-progress"]) == 0  # released: it runs
    assert {r.info.status for r in _runs(store).values()} == {"FINISHED"}
    assert not lock_file(store, EXPERIMENT, "held").exists()  # the lock file goes with its holder


@pytest.mark.slow
def test_same_study_started_twice_at_once(study_file, cli_popen, store, tmp_path):
    path = study_file("twice", model=NO_TRAIN, recipes=[{"name": "slow", "technique": "test_sleep"}])
    go = tmp_path / "go"  # the first run's recipe waits for this file: it holds the lease till then
    first = cli_popen("--tracking-uri", store, "run", str(path), "--no-progress", NETZIP_TEST_WAIT_FILE=str(go))
    try:
        lock = lock_file(store, EXPERIMENT, "twice")
        deadline = time.time() + 300
        while not (lock.exists() and lock.read_text()) and time.time() < deadline:
            time.sleep(0.2)
        second = cli_popen("--tracking-uri", store, "run", str(path), "--no-progress")
        _, err = second.communicate(timeout=600)
        assert second.returncode == 2, err
        assert f"already being run by pid {first.pid}" in err and "Traceback" not in err
        go.touch()
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-3000:]
    finally:
        go.touch()
        first.kill()
    runs = _runs(store)
    assert sorted(runs) == ["baseline", "slow", "twice"]  # one study run, one baseline, one recipe run
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert all(keys.TAG_ERROR not in r.data.tags for r in runs.values())


def test_server_lease_heartbeat_expiry_and_takeover(store):
    client = MlflowClient(store)
    experiment_id = client.create_experiment("lease-test")
    holder = TagLease(client, experiment_id, "s", ttl_s=1.0, heartbeat_s=0.1)
    holder.acquire(settle_s=0)
    try:
        time.sleep(1.5)  # longer than the ttl: only the heartbeat keeps it
        with pytest.raises(LeaseError, match=rf"study s is already being run by pid {os.getpid()} .* since 20.* UTC"):
            TagLease(client, experiment_id, "s", ttl_s=1.0).acquire(settle_s=0)
    finally:
        holder._stop.set()  # the holder "dies": no more heartbeats, the tag stays
        holder._thread.join()
    time.sleep(1.2)
    taker = TagLease(client, experiment_id, "s", ttl_s=1.0, heartbeat_s=10)
    taker.acquire(settle_s=0)  # expired: taken over
    assert taker.current().token == taker.me.token
    taker.release()
    assert "netzip.lease.s" not in client.get_experiment(experiment_id).tags


@pytest.mark.slow
@pytest.mark.parametrize("where", ["forward", "apply"])
def test_sys_exit_in_model_code_fails_only_its_recipe(plugin, study_file, store, capsys, where):
    recipes = [
        {"name": "exiter", "technique": "test_exit", "params": {"where": where}},
        {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
    ]
    path = study_file("exits", model=NO_TRAIN, recipes=recipes)
    code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED exiter (test_exit)" in err and "1 of 2 recipes failed" in err
    runs = _runs(store)
    assert runs["exiter"].info.status == "FAILED"
    tag = runs["exiter"].data.tags[keys.TAG_ERROR]
    assert "called sys.exit(0)" in tag and ("ModelError" in tag if where == "forward" else tag.startswith("SystemExit"))
    assert runs["ptq_int8"].info.status == "FINISHED"  # the study went on
    assert runs["exits"].info.status == "FINISHED"  # the study run itself completed


@pytest.mark.slow
def test_keyboard_interrupt_marks_the_run_killed(plugin, study_file, store, capsys):
    recipes = [{"name": "interrupted", "technique": "test_interrupt"}, {"name": "ptq_int8", "technique": "ptq"}]
    path = study_file("ctrlc", model=NO_TRAIN, recipes=recipes)
    code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    lines = _lines(capsys.readouterr().err)
    assert code == 130 and len(lines) == 1, lines
    assert lines[0].startswith("error: interrupted by user") and "run the same command again to resume" in lines[0]
    runs = _runs(store)
    assert "ptq_int8" not in runs  # the study stopped there
    for name in ("interrupted", "ctrlc"):
        assert runs[name].info.status == "KILLED", name
        assert runs[name].data.tags[keys.TAG_ERROR] == keys.ERROR_INTERRUPTED
    assert runs["baseline"].info.status == "FINISHED"


@pytest.mark.slow
def test_ctrl_c_on_the_cli_prints_one_line(study_file, cli_popen, store, tmp_path):
    path = study_file("sigint", model=NO_TRAIN, recipes=[{"name": "slow", "technique": "test_sleep"}])
    proc = cli_popen("--tracking-uri", store, "run", str(path), "--no-progress", NETZIP_TEST_WAIT_FILE=str(tmp_path / "never"))
    try:
        deadline = time.time() + 300
        while "slow" not in _runs_or_empty(store) and time.time() < deadline:
            time.sleep(0.3)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert _lines(err)[-1].startswith("error: interrupted by user")
    runs = _runs(store)
    assert runs["slow"].info.status == "KILLED" and runs["slow"].data.tags[keys.TAG_ERROR] == keys.ERROR_INTERRUPTED
    assert runs["sigint"].info.status == "KILLED"


def _runs_or_empty(uri: str) -> dict[str, object]:
    try:
        return _runs(uri)
    except Exception:  # noqa: BLE001 - the store may not exist yet
        return {}


@pytest.mark.slow
def test_no_finite_ocs_still_finishes_the_study(study_file, store, tmp_path, capsys):
    """A baseline that is always wrong (top-1 = 0): no OCS, no plots, the study still FINISHED.

    Class ``a`` is black images, ``b`` white ones; the model calls bright images ``a`` and dark ones ``b``.
    """
    from PIL import Image

    for label, value in (("a", 0), ("b", 255)):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), value).save(tmp_path / "images" / label / f"{i}.png")
    always_wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        always_wrong[1].weight.copy_(torch.stack([torch.ones(64), -torch.ones(64)]))
        always_wrong[1].bias.zero_()
    model_file = tmp_path / "always_wrong.pt"
    torch.save(always_wrong, model_file)
    recipes = [{"name": "pruned", "technique": "prune_unstructured", "params": {"amount": 0.5}}]
    data = {"path": str(tmp_path / "images"), "channels": 1, "image_size": 8, "batch_size": 4}
    model = {"arch": "tiny_cnn", "path": str(model_file), "trust_model_file": True}
    path = study_file("zero", recipes=recipes, model=model, data=data)
    code = main(["--tracking-uri", store, "run", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: no plots: no recipe has a finite OCS: the baseline's accuracy/top1 is 0" in err
    runs = _runs(store)
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    note = runs["zero"].data.tags[keys.TAG_LEADERBOARD_NOTE]
    assert "baseline's accuracy/top1 is 0" in note
    assert keys.TAG_ERROR not in runs["zero"].data.tags
    artifacts = {a.path for a in MlflowClient(store).list_artifacts(runs["zero"].info.run_id)}
    assert "leaderboard" in artifacts and "plots" not in artifacts
    assert main(["--tracking-uri", store, "run", str(path), "--no-progress"]) == 0  # and a rerun too


def test_credentials_in_the_tracking_uri_are_masked(study_file, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    previous = mlflow.get_tracking_uri()
    try:
        code = main(["--tracking-uri", "http://alice:s3cret@127.0.0.1:9", "run", str(study_file("secret", model=NO_TRAIN)), "--no-progress"])
    finally:
        mlflow.set_tracking_uri(previous)
    captured = capsys.readouterr()
    assert code == 2
    assert "s3cret" not in captured.err + captured.out
    assert "http://alice:***@127.0.0.1:9" in captured.err


@pytest.mark.slow
def test_store_deleted_while_the_study_runs(study_file, cli_popen, tmp_path):
    db = tmp_path / "gone.db"
    uri = f"sqlite:///{db}"
    path = study_file("gone", model=NO_TRAIN, recipes=[{"name": "slow", "technique": "test_sleep"}, {"name": "q", "technique": "ptq"}])
    go = tmp_path / "go"
    proc = cli_popen("--tracking-uri", uri, "run", str(path), "--no-progress", NETZIP_TEST_WAIT_FILE=str(go))
    try:
        deadline = time.time() + 300
        while "slow" not in _runs_or_empty(uri) and time.time() < deadline:
            time.sleep(0.3)
        db.unlink()
        go.touch()
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    lines = _lines(err)
    assert proc.returncode == 2 and len(lines) < 12, err
    assert lines[-1].startswith(f"error: MLflow tracking failed: the store file {db} no longer exists")
    assert "attempt to write a readonly database" in lines[-1]


@pytest.mark.slow
def test_skip_corrupt_runs_without_the_broken_files_and_counts_them(study_file, store, tmp_path, capsys):
    from PIL import Image

    for c, label in enumerate(("a", "b")):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), 100 * c + 10 * i).save(tmp_path / "images" / label / f"{i}.png")
    (tmp_path / "images" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = {"path": str(tmp_path / "images"), "channels": 1, "image_size": 8, "batch_size": 4, "skip_corrupt": True}
    path = study_file("skipping", model=NO_TRAIN, data=data)
    assert main(["--tracking-uri", store, "run", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    study_run = _runs(store)["skipping"]
    assert study_run.info.status == "FINISHED"
    assert study_run.data.params["data.skipped_files"] == "1"
    assert int(study_run.data.params["data.train_samples"]) + int(study_run.data.params["data.test_samples"]) == 12


def test_which_stores_get_a_lock_file(tmp_path):
    db = lock_file(f"sqlite:///{tmp_path}/m.db", "e", "s")
    assert db.parent == tmp_path and db.name.startswith("m.db.netzip-study-") and db.suffix == ".lock"
    assert lock_file(f"sqlite:///{tmp_path}/m.db", "e", "t") != db  # one lease per study
    assert lock_file(f"file://{tmp_path}/mlruns", "e", "s").parent == tmp_path / "mlruns"
    for server in ("http://host:5000", "https://u:p@host", "postgresql://u:p@db/mlflow", "databricks"):
        assert lock_file(server, "e", "s") is None  # a tag lease with a heartbeat instead
