"""Shared helpers of the study tests: a tiny, fast study and a CLI subprocess runner."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# A study that runs in seconds: 8x8 digits, a tiny CNN, in-process measurement with short budgets.
TINY = {
    "study": "tiny",
    "experiment": "netzip-tiny-rel",
    "seed": 0,
    "data": {"builtin": "digits", "limit": 120, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 1, "lr": 0.1}},
    "evaluation": {
        "isolate": False,
        "idle_s": 0.0,
        "system_metrics_interval_s": 0.2,
        "latency": {"warmup_s": 0.02, "budget_s": 0.2, "min_samples": 5},
        # one epoch on 96 images may leave the model at chance; these tests are about reliability
        "ratios": {"score_at_chance": True},
    },
    "recipes": [{"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}}],
}


def tiny_study(tmp_path: Path, name: str = "tiny", recipes=None, **changes) -> Path:
    """Write a tiny study YAML into ``tmp_path`` and return its path."""
    raw = copy.deepcopy(TINY)
    raw["study"] = name
    if recipes is not None:
        raw["recipes"] = recipes
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


CLI = (
    "import sys, netzip_test_plugin\n"
    "from netzip_mlflow.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def cli_command(*args: str) -> list[str]:
    """The command line of the CLI with the test-only techniques registered."""
    return [sys.executable, "-c", CLI, *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess and wait for it."""
    return subprocess.run(cli_command(*args), env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def plugin():
    """The test-only techniques, registered in this process (and unregistered afterwards)."""
    from netzip_mlflow.compression import registry

    sys.path.insert(0, str(HERE))
    try:
        import netzip_test_plugin

        for spec in netzip_test_plugin.TECHNIQUES:
            registry.register_technique(spec, replace=True)
        yield netzip_test_plugin
    finally:
        sys.path.remove(str(HERE))
        for spec in netzip_test_plugin.TECHNIQUES:
            registry._REGISTRY.pop(spec.name, None)


@pytest.fixture
def store(tmp_path):
    """A private SQLite tracking store for one test; yields its URI, restores the previous one."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def study_file(tmp_path):
    """``study_file(name, recipes=None, **top_level_changes)`` -> path of a tiny study YAML."""
    return lambda name="tiny", recipes=None, **changes: tiny_study(tmp_path, name, recipes, **changes)


@pytest.fixture
def cli():
    """``cli(*args, timeout=120, **env)`` runs the CLI (with the test techniques) in a subprocess."""
    return run_cli


@pytest.fixture
def cli_popen():
    """``cli_popen(*args, **env)`` starts the CLI in a subprocess and returns the Popen."""
    return lambda *args, **env: subprocess.Popen(
        cli_command(*args), env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
