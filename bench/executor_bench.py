"""Wall time of one study with the local executor and with the Ray executor (2 workers), both against
the same PostgreSQL-backed MLflow server on loopback.

    python -m bench.executor_bench [--recipes 8] [--ray-cpus 2] [--out bench/executor_bench.json]

Starts PostgreSQL (``scripts/ci_services.sh``), ``mlflow server`` and ``ray start --head
--num-cpus=N`` (N concurrent one-CPU recipe tasks), runs the tiny study (digits, tiny_cnn) with N
recipes once per executor, prints a markdown table and writes JSON; stops everything at the end.
What is timed: ``run_study`` end to end (data, baseline training and evaluation, recipes, leaderboard).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TECHNIQUES = [
    ("ptq_int8", "ptq", {"calibration_batches": 2}),
    ("ptq_dynamic", "ptq_dynamic", {}),
    ("fp16", "fp16", {}),
    ("gup_l1_30", "prune_unstructured", {"importance": "l1", "amount": 0.3}),
    ("gup_l1_50", "prune_unstructured", {"importance": "l1", "amount": 0.5}),
    ("gup_l1_75", "prune_unstructured", {"importance": "l1", "amount": 0.75}),
    ("structured_30", "prune_structured", {"importance": "l1", "amount": 0.3}),
    ("structured_50", "prune_structured", {"importance": "l1", "amount": 0.5}),
]


def study(n: int, name: str) -> dict:
    return {
        "study": name,
        "experiment": f"netzip-{name}",
        "seed": 0,
        "data": {"builtin": "digits", "limit": 300, "batch_size": 32},
        "model": {"arch": "tiny_cnn", "train": {"epochs": 2, "lr": 0.1}},
        "evaluation": {"isolate": False, "idle_s": 0.2, "latency": {"warmup_s": 0.1, "budget_s": 0.5}},
        "recipes": [{"name": r, "technique": t, "params": p} for r, t, p in (TECHNIQUES * 2)[:n]],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise RuntimeError(f"{url} not up after {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=8)
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the Ray head = concurrent recipe tasks")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "executor_bench.json")
    args = parser.parse_args(argv)

    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0",
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    pg_dir = tempfile.mkdtemp(prefix="netzip-pg-", dir="/tmp")
    os.chmod(pg_dir, 0o755)
    ray_dir = tempfile.mkdtemp(prefix="netzip-ray-", dir="/tmp")
    art_dir = tempfile.mkdtemp(prefix="netzip-art-")
    services = ["bash", str(ROOT / "scripts" / "ci_services.sh")]
    procs: list[subprocess.Popen] = []
    results = []
    try:
        pg_uri = subprocess.run([*services, "start", pg_dir, str(free_port())], check=True, capture_output=True,
                                text=True).stdout.strip().splitlines()[-1]
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", pg_uri, "--artifacts-destination",
             art_dir, "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", procs[-1])
        ray_port = free_port()
        ray_bin = Path(sys.executable).with_name("ray")
        procs.append(subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", f"--port={ray_port}", f"--num-cpus={args.ray_cpus}",
             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--object-store-memory=100000000",
             "--disable-usage-stats", f"--temp-dir={ray_dir}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        import mlflow

        from netzip_mlflow.config.loader import validate_study
        from netzip_mlflow.study.executors import LocalExecutor, RayExecutor
        from netzip_mlflow.study.runner import run_study

        mlflow.set_tracking_uri(url)
        for kind in ("local", "ray"):
            if kind == "ray":
                import ray

                deadline = time.monotonic() + 300
                while True:  # the head is up once a driver can connect
                    try:
                        ray.init(address=f"127.0.0.1:{ray_port}", log_to_driver=False)
                        break
                    except Exception:  # noqa: BLE001 - not up yet
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(2)
                ray.shutdown()
            spec = validate_study(study(args.recipes, f"bench-{kind}"))
            executor = LocalExecutor() if kind == "local" else RayExecutor(f"127.0.0.1:{ray_port}")
            load = os.getloadavg()[0]
            start = time.perf_counter()
            result = run_study(spec, progress=False, executor=executor)
            wall = time.perf_counter() - start
            results.append({"executor": kind, "recipes": args.recipes, "wall_s": round(wall, 1),
                            "failed": len(result.failed), "load_avg_1min_before": round(load, 1)})
            print(f"{kind}: {wall:.1f} s, {len(result.failed)} failed", flush=True)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        for proc in reversed(procs):
            stop(proc)
        subprocess.run([*services, "stop", pg_dir], capture_output=True)
        for d in (pg_dir, ray_dir, art_dir):
            shutil.rmtree(d, ignore_errors=True)
    meta = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "ray_cpus": args.ray_cpus, "results": results}
    args.out.write_text(json.dumps(meta, indent=2))
    print("\n| executor | recipes | wall s | failed | load avg before |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['executor']} | {r['recipes']} | {r['wall_s']} | {r['failed']} | {r['load_avg_1min_before']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
