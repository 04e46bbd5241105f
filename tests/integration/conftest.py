"""Services for the integration tests, all on loopback and all stopped at the end.

``postgres``: a throw-away PostgreSQL cluster (``scripts/ci_services.sh``); ``mlflow_server``: an
MLflow tracking server with basic auth, that PostgreSQL as backend store and a temporary artifact
store served by the server (``--serve-artifacts``); ``ray_cluster``: ``ray start --head`` plus one
worker node advertising the custom resource ``rpi4``. Each fixture skips its tests with the reason
when what it needs is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "ci_services.sh"
ADMIN = ("admin", "netzip-" + secrets.token_hex(8))
SERVER_START_S = 300
RAY_START_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"needs the python package {module!r}: pip install -e '.[{extra}]'")


def _stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group this test started (``start_new_session``), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL database URI on 127.0.0.1 (cluster in a temporary folder, removed after)."""
    _need("psycopg", "server")
    if subprocess.run(["bash", str(SERVICES), "bindir"], capture_output=True).returncode != 0:
        pytest.skip("no PostgreSQL server: run `scripts/ci_services.sh install` (apt-get install postgresql)")
    folder = tempfile.mkdtemp(prefix="netzip-pg-", dir="/tmp")  # the postgres user must reach it
    os.chmod(folder, 0o755)
    port = free_port()
    try:
        done = subprocess.run(["bash", str(SERVICES), "start", folder, str(port)], capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            pytest.fail(f"PostgreSQL did not start: {done.stderr.strip()}")
        yield done.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SERVICES), "stop", folder], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    url: str
    artifacts: Path
    username: str
    password: str


@pytest.fixture(scope="session")
def mlflow_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server --app-name basic-auth`` on PostgreSQL with a served artifact store."""
    _need("flask_wtf", "server")
    tmp = tmp_path_factory.mktemp("mlflow-server")
    artifacts = tmp / "artifacts"
    auth_ini = tmp / "basic_auth.ini"
    auth_ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{tmp / 'basic_auth.db'}\nadmin_username = {ADMIN[0]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # cache credential checks: without it every request pays a PBKDF2 hash (slow on 2 cores)
        "auth_cache_ttl_seconds = 300\n"
    )
    port = free_port()
    env = _child_env(
        MLFLOW_AUTH_CONFIG_PATH=str(auth_ini), MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no background job runners: nothing here uses them
    )
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
         "--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--app-name", "basic-auth"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {SERVER_START_S} s: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(2)
        yield Server(url, artifacts, *ADMIN)
    finally:
        _stop_group(proc)
        log.close()


@dataclass(frozen=True)
class RayCluster:
    address: str
    head_node_id: str
    worker_node_id: str


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """``ray start --head`` (3 CPUs) and a worker node (1 CPU, custom resource ``rpi4``) on loopback."""
    _need("ray", "ray")
    import ray

    ray_bin = Path(sys.executable).with_name("ray")
    command = [str(ray_bin)] if ray_bin.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
    temp = tempfile.mkdtemp(prefix="netzip-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--object-store-memory=100000000", "--disable-usage-stats"]
    env = _child_env()
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for name, args in (
            ("head", ["--head", f"--port={port}", "--num-cpus=3", "--include-dashboard=false", f"--temp-dir={temp}"]),
            ("worker", [f"--address={address}", "--num-cpus=1", '--resources={"rpi4": 1}']),
        ):
            log = open(Path(temp) / f"ray-start-{name}.log", "w")  # noqa: SIM115 - closed below
            logs.append(log)
            procs.append(subprocess.Popen([*command, "start", *args, *common], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            if name == "head":
                _wait_for(lambda: _gcs_up(port), RAY_START_S, "ray head", procs[-1], Path(log.name))
        ray.init(address=address, log_to_driver=False)
        try:
            _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) >= 2, RAY_START_S, "ray worker node", procs[-1], Path(logs[-1].name))
            nodes = [n for n in ray.nodes() if n["Alive"]]
            worker = next(n["NodeID"] for n in nodes if n["Resources"].get("rpi4"))
            head = next(n["NodeID"] for n in nodes if not n["Resources"].get("rpi4"))
        finally:
            ray.shutdown()
        yield RayCluster(address, head, worker)
    finally:
        import ray as _ray

        if _ray.is_initialized():
            _ray.shutdown()
        for proc in reversed(procs):
            _stop_group(proc, grace_s=60)
        for log in logs:
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _gcs_up(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(check, timeout_s: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not up after {timeout_s} s: {log.read_text()[-2000:]}")
        time.sleep(1)
