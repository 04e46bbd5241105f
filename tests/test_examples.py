"""The scripts in examples/ run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(script: str, cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(cwd)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_evaluate_then_query_leaderboard(tmp_path):
    out = run("evaluate_your_model.py", tmp_path)
    assert "accuracy/top1" in out and "ocs" in out
    assert (tmp_path / "mlflow.db").is_file()  # MLflow's embedded default store
    out = run("query_leaderboard.py", tmp_path, "netzip-example")
    assert "gup_l1_50" in out and "OCS recomputed" in out
