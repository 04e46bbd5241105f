"""Four studies started at once against one new SQLite store all finish with every run recorded."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

N = 4
TIMEOUT_S = 3600.0
"""Generous on purpose: this test measures no speed (four studies on a loaded 2-core machine can take
many minutes); only a hang, which it exists to catch, should ever reach it."""


def test_four_studies_at_once_on_one_sqlite_store(study_file, cli_popen, tmp_path):
    uri = f"sqlite:///{tmp_path}/shared.db"  # does not exist yet: creation itself is raced
    paths = [
        study_file(f"conc{i}", model={"arch": "tiny_cnn", "train": {"epochs": 0}}) for i in range(N)
    ]
    procs = []
    try:
        procs.extend(cli_popen("--tracking-uri", uri, "run", str(p), "--no-progress") for p in paths)
        results = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:  # never leave a study running, whatever failed
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
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
