"""Benchmark: rank 1,000 and 10,000 compressed runs from a SQLite MLflow store.

Each size gets a fresh SQLite store holding one study: a parent run, a baseline and N compressed
runs (1% of them FAILED) logged with ``MlflowClient.log_batch`` with a realistic payload (every
metric key of the contract, recipe params, hardware/software tags). Generation is not timed. Then
``leaderboard()`` (query + ranking + Pareto flags) is timed with the logged scores and with
recomputed scores (``RatioConfig(speedup="speed/latency_ms")``), and MLflow's ``search_runs`` alone
as the floor, ``--repeats`` times each. Run from the repository root:

    .venv/bin/python -m bench.leaderboard_bench                 # 1,000 and 10,000 runs
    .venv/bin/python -m bench.leaderboard_bench --sizes 1000 3000 --keep /tmp/lb-stores
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sized
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric, Param, Run, ViewType
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from netzip_mlflow.analysis.leaderboard import leaderboard
from netzip_mlflow.analysis.ratios import RatioConfig, compute_ratios
from netzip_mlflow.analysis.render import render
from netzip_mlflow.tracking import keys

EXPERIMENT = "leaderboard-bench"
STUDY = "bench-study"
HW_ID, HW_CPU = "a1b2c3d4", "Intel(R) Core(TM) i7-9750H"
TECHNIQUES = ("ptq", "ptq_dynamic", "fp16", "qat", "prune_unstructured", "prune_structured")
FAILED_SHARE = 0.01
BASELINE = {
    keys.TOP1: 0.89,
    keys.TOP5: 0.98,
    keys.LATENCY_MS: 12.0,
    keys.CHATS: 57.92e9,
    keys.MACS: 1.81e9,
    keys.DISK_MB: 46.8,
    keys.PARAMS: 11.7e6,
    keys.ENERGY_PER_SAMPLE: 0.45,
}
RECOMPUTE = RatioConfig(speedup=keys.LATENCY_MS)


def _metrics(rng: random.Random) -> dict[str, float]:
    """Every contract metric key with a plausible value for one compressed model."""
    values = {key: rng.uniform(0.0, 100.0) for key in keys.METRICS}
    values.update({key: base * rng.uniform(0.2, 1.05) for key, base in BASELINE.items()})
    values[keys.TOP1] = BASELINE[keys.TOP1] * rng.uniform(0.6, 1.01)
    return values


def _log_run(
    client: MlflowClient,
    experiment_id: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, str],
    status: str = "FINISHED",
) -> str:
    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def _common_tags(role: str, parent: str | None) -> dict[str, str]:
    tags = {
        keys.TAG_ROLE: role,
        keys.TAG_STUDY: STUDY,
        keys.TAG_TASK: "classification",
        keys.TAG_HW_PREFIX + "id": HW_ID,
        keys.TAG_HW_PREFIX + "cpu": HW_CPU,
        keys.TAG_HW_PREFIX + "cores": "2",
        keys.TAG_HW_PREFIX + "ram_gb": "24",
        keys.TAG_SW_PREFIX + "torch": "2.14.1",
        keys.TAG_SW_PREFIX + "mlflow": "3.17.2",
        keys.TAG_SW_PREFIX + "python": "3.11",
        keys.TAG_ENERGY_METER: "codecarbon (estimate)",
        "mlflow.user": "bench",
        "mlflow.source.name": "bench/leaderboard_bench.py",
    }
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    return tags


def generate(tracking_uri: str, n_compressed: int, seed: int = 0) -> None:
    """Log one study with ``n_compressed`` compressed runs into a fresh store (not timed)."""
    rng = random.Random(seed)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    study = client.create_run(experiment_id, tags=_common_tags(keys.ROLE_STUDY, None)).info.run_id
    base_tags = _common_tags(keys.ROLE_BASELINE, study)
    base_id = _log_run(client, experiment_id, base_tags, BASELINE, {"model": "resnet18"})
    for i in tqdm(range(n_compressed), desc=f"logging {n_compressed} runs", unit="run"):
        technique = TECHNIQUES[i % len(TECHNIQUES)]
        metrics = _metrics(rng)
        scores = compute_ratios(BASELINE, metrics)
        metrics.update({keys.RATIO_KEYS[n]: r for n, r in scores.ratios.items() if r is not None})
        metrics[keys.OCS] = scores.ocs
        tags = _common_tags(keys.ROLE_COMPRESSED, study) | {
            keys.TAG_TECHNIQUE: technique,
            keys.TAG_RECIPE: f"{technique}_{i}",
            keys.TAG_BASELINE_RUN: base_id,
            **{keys.ratio_metric_tag(n): m for n, m in scores.metrics_used.items()},
        }
        failed = rng.random() < FAILED_SHARE
        if failed:
            tags[keys.TAG_ERROR] = "CompressionError: synthetic failure"
        params = {"amount": f"{rng.uniform(0.1, 0.9):.2f}", "importance": "l1", "epochs": "1",
                  "backend": "fbgemm", "calibration_batches": "8", "seed": str(i)}
        status = "FAILED" if failed else "FINISHED"
        _log_run(client, experiment_id, tags, metrics, params, status)
    client.set_terminated(study)


def search_only(uri: str) -> list[Run]:
    """The floor: MLflow's own ``search_runs`` for the compressed runs, paged, collector paused."""
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs, token = [], None
    gc.disable()
    try:
        while True:
            page = client.search_runs([experiment_id], f"tags.`{keys.TAG_ROLE}` = 'compressed'",
                                      ViewType.ACTIVE_ONLY, 10_000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs
    finally:
        gc.enable()


def _timed(fn: Callable[[], Sized], repeats: int) -> tuple[list[float], int]:
    times, rows = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = len(fn())
        times.append(time.perf_counter() - start)
    return times, rows


def bench_size(store_dir: Path, n: int, repeats: int) -> list[dict[str, object]]:
    """Generate (unless present) and time one store; one result row per mode."""
    db = store_dir / f"runs_{n}.db"
    uri = f"sqlite:///{db}"
    if not db.exists():
        generate(uri, n)
    start = time.perf_counter()
    MlflowClient(uri).search_experiments()
    opened = time.perf_counter() - start
    results = []
    modes: dict[str, Callable[[], Sized]] = {
        "leaderboard, logged scores": lambda: leaderboard(EXPERIMENT, tracking_uri=uri),
        "leaderboard, recompute": lambda: leaderboard(EXPERIMENT, tracking_uri=uri,
                                                      ratio_config=RECOMPUTE),
        "search_runs alone (floor)": lambda: search_only(uri),
    }
    for mode, fn in modes.items():
        times, rows = _timed(fn, repeats)
        results.append({
            "runs": n, "mode": mode, "rows": rows, "store open s": round(opened, 2),
            "min s": round(min(times), 3), "median s": round(statistics.median(times), 3),
            "max s": round(max(times), 3), "µs / run (median)":
            round(statistics.median(times) / n * 1e6, 1),
        })
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep (and reuse) the generated stores in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="netzip-lb-bench-") as tmp:
        store_dir = args.keep or Path(tmp)
        store_dir.mkdir(parents=True, exist_ok=True)
        rows = [r for n in args.sizes for r in bench_size(store_dir, n, args.repeats)]
    table = pd.DataFrame(rows)
    print(render(table, "markdown", columns=list(table.columns)))


if __name__ == "__main__":
    main()
