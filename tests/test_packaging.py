"""The built wheel installs beside a host's own, older torch/torchvision and another MLflow 3.x.

``pip install --dry-run --report`` resolves the wheel together with those pins from package metadata
only (no multi-GB download): if netzip-mlflow's requirements excluded them, pip would have to change
the host's torch or MLflow, and the resolve fails. Needs PyPI; skipped when it cannot be reached.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A host stack other than constraints.txt's torch 2.14.1 / torchvision 0.29.1 / mlflow 3.17.2.
HOST_STACK = {"torch": "2.6.0", "torchvision": "0.21.0", "mlflow": "3.10.1"}

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def _pip(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PIP_CONSTRAINT", None)
    return subprocess.run([sys.executable, "-m", "pip", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("netzip_mlflow-*.whl")
    return path


def test_the_wheel_carries_ranges_not_pins(wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
        names = zf.namelist()
    requires = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("torch") and ">=" in r for r in core)
    assert not [r for r in core if "==" in r], core
    assert "netzip_mlflow/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def test_resolves_beside_an_older_torch_and_another_mlflow(wheel, tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI cannot be reached")
    report = tmp_path / "report.json"
    pins = [f"{name}=={version}" for name, version in HOST_STACK.items()]
    done = _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--only-binary", ":all:", str(wheel), *pins)
    assert done.returncode == 0, f"pip cannot install the wheel beside {pins}:\n{done.stderr[-3000:]}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    for name, version in HOST_STACK.items():
        assert chosen[name] == version, (name, chosen.get(name))
