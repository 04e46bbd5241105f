"""The package as a guest: importing it changes nothing, one version source, typed, licensed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import netzip_mlflow

ROOT = Path(__file__).resolve().parents[1]

IMPORTS_CHANGE_NOTHING = """
import json, os, sys
os.environ.pop("MLFLOW_DISABLE_TELEMETRY", None)
import mlflow                                   # loads the plugin entry points
import torchvision, torchmetrics                # torchvision itself sets TORCHINDUCTOR_CACHE_DIR
before = dict(os.environ)
uri = mlflow.get_tracking_uri()
import netzip_mlflow, netzip_mlflow.tracking.context, netzip_mlflow.tracking.plugin
import netzip_mlflow.api, netzip_mlflow.study.runner, netzip_mlflow.cli.main
print(json.dumps({"changed": sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)),
                  "uri_same": mlflow.get_tracking_uri() == uri}))
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_importing_the_package_changes_no_environment_variable():
    out = subprocess.run([sys.executable, "-c", IMPORTS_CHANGE_NOTHING], env=_clean_env(),
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"changed": [], "uri_same": True}


def test_python_dash_m_runs_the_cli_and_version_has_one_source():
    out = subprocess.run([sys.executable, "-m", "netzip_mlflow", "--version"], env=_clean_env(),
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip() == f"netzip-mlflow {netzip_mlflow.__version__}"
    try:
        installed = importlib.metadata.version("netzip-mlflow")
    except importlib.metadata.PackageNotFoundError:
        return
    assert installed == netzip_mlflow.__version__


def test_pep_621_metadata_reads_the_version_from_the_package():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
    assert not (ROOT / "setup.cfg").exists()  # one place for the metadata
    for requirement in project["dependencies"]:  # ranges with a next-major cap, never a pin
        assert "==" not in requirement and "<" in requirement, requirement


def test_typed_and_licensed():
    assert (Path(netzip_mlflow.__file__).parent / "py.typed").is_file()
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
