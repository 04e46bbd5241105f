"""Benchmark: is the default OCS reproducible across fresh runs of the demo study, one under a CPU hog?

Runs ``recipes/quickstart.yaml`` (the study of ``make demo``) ``--runs`` times, each fresh, in its own
new SQLite store; during the run given by ``--hog-run`` two busy-loop processes keep both cores
busy (started before the study, killed in ``finally``). For every recipe it reports the default OCS
(efficiency from the paired measurement, as logged) and, from the same runs' logged raw metrics,
the OCS the old unpaired efficiency (baseline J/sample / compressed J/sample) would have given.
``--set KEY=VALUE`` overrides study fields (e.g. a shorter latency budget). Run from the repo root:

    .venv/bin/python -m bench.ocs_reproducibility
    .venv/bin/python -m bench.ocs_reproducibility --set evaluation.latency.budget_s=4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.ratios import RatioConfig, compute_ratios
from netzip_mlflow.config.loader import load_study
from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys

HOG = "while True: pass"


def parse_sets(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs, values read as YAML scalars."""
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def one_run(overrides: dict[str, object], hog: bool, keep: str | None = None) -> dict[str, dict[str, float]]:
    """One fresh study in a new store (kept in the folder ``keep`` if given, else deleted);
    recipe -> {ocs, ocs_unpaired, E, E_unpaired, seconds}."""
    hogs: list[subprocess.Popen] = []
    if keep:
        os.makedirs(keep, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netzip-ocs-") as scratch:
        tmp = keep or scratch
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        started = time.perf_counter()
        try:
            if hog:
                hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 2)]
            spec = load_study("recipes/quickstart.yaml", overrides)
            result = run_study(spec, progress=False, fresh=True)
        finally:
            for proc in hogs:
                proc.kill()
                proc.wait()
        seconds = time.perf_counter() - started
        client = MlflowClient()
        base = client.get_run(result.baseline_run_id).data.metrics
        rows = {}
        for outcome in result.outcomes:
            run = client.get_run(outcome.run_id).data
            unpaired = compute_ratios(base, run.metrics, RatioConfig())  # no paired: the old ratio
            rows[outcome.recipe] = {
                "ocs": run.metrics.get(keys.OCS, float("nan")),
                "E": run.metrics.get(keys.RATIO_EFFICIENCY, float("nan")),
                "E_ci": (run.metrics.get(keys.RATIO_EFFICIENCY_PAIRED_LOW, float("nan")),
                         run.metrics.get(keys.RATIO_EFFICIENCY_PAIRED_HIGH, float("nan"))),
                "ocs_unpaired": unpaired.ocs,
                "E_unpaired": unpaired.ratios["efficiency"] or float("nan"),
                "efficiency_tag": run.tags.get(keys.ratio_metric_tag("efficiency"), ""),
                "seconds": seconds,
            }
        mlflow.set_tracking_uri(None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hog-run", type=int, default=2, help="which run (1-based) runs under the CPU hog; 0: none")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", metavar="DIR", help="keep run i's store in DIR/run<i> (for netzip leaderboard)")
    args = parser.parse_args()
    overrides = parse_sets(args.sets)
    results = []
    for i in range(1, args.runs + 1):
        hog = i == args.hog_run
        load = os.getloadavg()
        rows = one_run(overrides, hog, os.path.join(args.keep, f"run{i}") if args.keep else None)
        results.append(rows)
        print(f"run {i}{' (CPU hog on every core)' if hog else ''}: load before {load[0]:.1f}, "
              f"{next(iter(rows.values()))['seconds']:.0f} s", flush=True)
        for name, r in rows.items():
            print(f"  {name}: OCS {r['ocs']:.3f} (E {r['E']:.3f} [{r['E_ci'][0]:.3f}, {r['E_ci'][1]:.3f}], "
                  f"{r['efficiency_tag']}); unpaired OCS {r['ocs_unpaired']:.3f} (E {r['E_unpaired']:.3f})", flush=True)
    recipes = list(results[0])
    for label, key, e_key in (("paired (default now)", "ocs", "E"), ("unpaired (before)", "ocs_unpaired", "E_unpaired")):
        print(f"\n{label}\n")
        print("| recipe | " + " | ".join(f"run {i + 1} OCS (E)" for i in range(len(results))) + " | (max-min)/median |")
        print("|---|" + "---|" * (len(results) + 1))
        for name in recipes:
            values = [r[name][key] for r in results]
            cells = " | ".join(f"{r[name][key]:.3f} ({r[name][e_key]:.2f})" for r in results)
            rel = (max(values) - min(values)) / abs(statistics.median(values))
            print(f"| {name} | {cells} | {100 * rel:.1f} % |")
        for i, r in enumerate(results):
            ranking = sorted(recipes, key=lambda n: r[n][key], reverse=True)
            print(f"run {i + 1} ranking: {' > '.join(ranking)}")


if __name__ == "__main__":
    main()
