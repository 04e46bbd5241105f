"""Benchmark: paired vs unpaired speedup of ResNet18 (MNIST) against its PTQ and 75 % unstructured prune.

Each repetition is the measurement part of a fresh study: the baseline measured in its own fresh
worker, then each compressed model in its own fresh worker, which also times it against the
baseline interleaved (the paired protocol of :mod:`netzip_mlflow.evaluation.paired`). The unpaired
speedup is the study's old ratio, baseline median / compressed median from the two separate workers;
the paired one is ``ratio/speedup_paired`` with its 95 % CI. The models are made once (seeded,
untrained: timing does not depend on the weights' values, and the prune zeroes 75 % of them either
way). Run from the repository root:

    .venv/bin/python -m bench.paired_bench                       # 5 repetitions, 8 s budget
    .venv/bin/python -m bench.paired_bench --repeats 3 --budget 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.config.loader import load_study
from netzip_mlflow.evaluation.accuracy import model_input
from netzip_mlflow.evaluation.evaluator import measure_model_runtime
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study.context import example_inputs, load_data
from netzip_mlflow.tracking import keys

RECIPES = {
    "ptq_int8": ("ptq", {"calibration_batches": 8}),
    "gup_l1_75": ("prune_unstructured", {"importance": "l1", "amount": 0.75}),
}


def spread(values: list[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=8.0, help="latency (and paired) budget, s")
    args = parser.parse_args()

    spec = load_study("recipes/quickstart.yaml")
    data = load_data(spec)
    torch.manual_seed(0)
    baseline = build_model("resnet18", len(data.split.classes), data.split.input_shape, seed=0).eval()
    models = {
        name: compress(baseline, technique, params, data=data.train, example_inputs=example_inputs(data)).model.eval()
        for name, (technique, params) in RECIPES.items()
    }
    image = next(iter(data.test))[0][:1]
    config = EvaluationConfig(idle_s=0.5, progress=False, latency=LatencySettings(warmup_s=0.5, budget_s=args.budget))
    print(f"load average before: {os.getloadavg()}")
    rows = []
    started = time.perf_counter()
    for rep in range(1, args.repeats + 1):
        base = measure_model_runtime(baseline, model_input(image, baseline), config)
        for name, model in models.items():
            result = measure_model_runtime(model, model_input(image, model), config, baseline)
            m = result.metrics
            rows.append({
                "rep": rep, "recipe": name,
                "base_ms": base.metrics[keys.LATENCY_MS], "comp_ms": m[keys.LATENCY_MS],
                "unpaired": base.metrics[keys.LATENCY_MS] / m[keys.LATENCY_MS],
                "paired": m[keys.RATIO_SPEEDUP_PAIRED], "low": m[keys.RATIO_SPEEDUP_PAIRED_LOW],
                "high": m[keys.RATIO_SPEEDUP_PAIRED_HIGH], "rounds": int(m[keys.PAIRED_ROUNDS]),
                "k": int(m[keys.PAIRED_CALLS_PER_BLOCK]),
                "target_met": result.tags[keys.TAG_PAIRED_TARGET_MET],
                "eff_paired": m.get(keys.RATIO_EFFICIENCY_PAIRED, float("nan")),
            })
            r = rows[-1]
            print(f"rep {rep} {name}: unpaired {r['unpaired']:.3f}  paired {r['paired']:.3f} "
                  f"[{r['low']:.3f}, {r['high']:.3f}] rounds {r['rounds']} k {r['k']}", flush=True)
    print(f"load average after: {os.getloadavg()}; {time.perf_counter() - started:.0f} s")
    print("\n| rep | recipe | baseline ms | compressed ms | unpaired ratio | paired ratio | paired 95 % CI | CI contains 1 | rounds x k | target met | paired efficiency |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        contains = r["low"] <= 1.0 <= r["high"]
        print(f"| {r['rep']} | {r['recipe']} | {r['base_ms']:.2f} | {r['comp_ms']:.2f} | {r['unpaired']:.3f} | "
              f"{r['paired']:.3f} | [{r['low']:.3f}, {r['high']:.3f}] | {'yes' if contains else 'no'} | "
              f"{r['rounds']} x {r['k']} | {r['target_met']} | {r['eff_paired']:.3f} |")
    print("\n| recipe | unpaired: median, (max-min)/median | paired: median, (max-min)/median |")
    print("|---|---|---|")
    for name in RECIPES:
        un = [r["unpaired"] for r in rows if r["recipe"] == name]
        pa = [r["paired"] for r in rows if r["recipe"] == name]
        print(f"| {name} | {statistics.median(un):.3f}, {100 * spread(un):.1f} % | "
              f"{statistics.median(pa):.3f}, {100 * spread(pa):.1f} % |")


if __name__ == "__main__":
    main()
