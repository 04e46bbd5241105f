"""Four studies started at once against one new SQLite store all finish with every run recorded."""

from __future__ import annotations

import os
import time

import pytest
from mlflow.tracking import MlflowClient


N = 4
BASE_TIMEOUT_S = 300  # what the four studies need on an idle 2-core machine, with room to spare


def timeout_s(base: float = BASE_TIMEOUT_S) -> float:
    """``base`` scaled with the machine: fewer cores or a busier machine get proportionally longer
    (``NETZIP_TEST_TIMEOUT_SCALE`` multiplies it further)."""
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] / cores if hasattr(os, "getloadavg") else 1.0
    scale = max(1.0, 2.0 / cores, busy) * float(os.environ.get("NETZIP_TEST_TIMEOUT_SCALE", "1"))
    return base * scale


def test_timeout_scales_with_load(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0 * (os.cpu_count() or 1), 0.0, 0.0))
    assert timeout_s(10) == pytest.approx(80.0)
    monkeypatch.setenv("NETZIP_TEST_TIMEOUT_SCALE", "2")
    assert timeout_s(10) == pytest.approx(160.0)


@pytest.mark.slow
def test_four_studies_at_once_on_one_sqlite_store(study_file, cli_popen, tmp_path):
    uri = f"sqlite:///{tmp_path}/shared.db"  # does not exist yet: creation itself is raced
    paths = [
        study_file(f"conc{i}", model={"arch": "tiny_cnn", "train": {"epochs": 0}}) for i in range(N)
    ]
    procs = [cli_popen("--tracking-uri", uri, "run", str(p), "--no-progress") for p in paths]
    deadline = time.monotonic() + timeout_s()
    try:
        results = [p.communicate(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for proc in procs:  # on a timeout or any failure, leave no study running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[:4000]
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name == "netzip-tiny-rel"]
    assert len(experiments) == 1  # created once, whoever won the race
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == 3 * N  # a study run, a baseline and a recipe each
    assert all(r.info.status == "FINISHED" for r in runs)
    for i in range(N):
        mine = [r for r in runs if r.data.tags.get("netzip.study") == f"conc{i}"]
        roles = sorted(r.data.tags["netzip.role"] for r in mine)
        assert roles == ["baseline", "compressed", "study"], (i, roles)
        (recipe,) = [r for r in mine if r.data.tags["netzip.role"] == "compressed"]
        assert "ocs" in recipe.data.metrics
