"""Benchmark: run-to-run spread of the isolated runtime measurement of one model.

The same model (a built-in architecture with seeded random weights) is measured ``--repeats`` times
with the full protocol the evaluator uses: each time in a freshly spawned worker process
(:func:`netzip_mlflow.evaluation.runtime.measure_runtime_isolated`), threads fixed, idle power read
right before the window, the adaptive latency protocol, RSS sampled at 100 Hz, the best energy meter
of the machine. The input is one real sample of the built-in dataset (batch 1, as the paper).
Reported: each run's median latency, its CI, energy per sample, power, idle power and the machine's
background CPU; and the spread of median latency and of energy over the runs, as
``(max - min) / median`` and as the coefficient of variation. Run from the repository root:

    .venv/bin/python -m bench.measurement_bench                         # resnet18 on MNIST, 5 runs
    .venv/bin/python -m bench.measurement_bench --arch tiny_cnn --dataset digits --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import psutil
from tqdm import tqdm

from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.evaluation.runtime import RuntimeResult, RuntimeSettings, measure_runtime_isolated
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.hardware import hardware_facts

COLUMNS = (
    ("median ms", keys.LATENCY_MS, "{:.3f}"),
    ("CI95 rel", keys.LATENCY_CI95_REL, "{:.4f}"),
    ("timed calls", keys.LATENCY_SAMPLES, "{:.0f}"),
    ("J / sample", keys.ENERGY_PER_SAMPLE, "{:.5f}"),
    ("power W", keys.POWER, "{:.3f}"),
    ("idle W", keys.IDLE_POWER, "{:.3f}"),
    ("CPU %", keys.CPU_UTIL, "{:.1f}"),
    ("background CPU %", keys.CPU_BACKGROUND, "{:.1f}"),
    ("RAM model MB", keys.RAM_MODEL, "{:.1f}"),
)


@dataclass(frozen=True)
class Spread:
    """Spread of one figure over the runs."""

    median: float
    range_rel: float
    cv: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        """``(max - min) / median`` and ``stdev / mean`` of ``values`` (needs two or more)."""
        median = statistics.median(values)
        return cls(
            median=median,
            range_rel=(max(values) - min(values)) / median,
            cv=statistics.stdev(values) / statistics.fmean(values),
        )


def _cell(result: RuntimeResult, key: str, form: str) -> str:
    return form.format(result.metrics[key]) if key in result.metrics else "absent"


def _spread_line(name: str, results: list[RuntimeResult], key: str) -> str:
    values = [r.metrics[key] for r in results if key in r.metrics]
    if len(values) < 2:
        return f"| {name} | absent in {len(results) - len(values)} of {len(results)} runs | | |"
    s = Spread.of(values)
    return f"| {name} | {s.median:.5g} | {100 * s.range_rel:.2f} % | {100 * s.cv:.2f} % |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--idle-s", type=float, default=1.0)
    parser.add_argument("--budget-s", type=float, default=10.0)
    args = parser.parse_args()

    data = load_builtin(args.dataset, limit=200)
    sample = data.test[0][0].unsqueeze(0)
    model = build_model(args.arch, len(data.classes), data.input_shape).eval()
    macs = count_ops(model, sample).macs
    settings = RuntimeSettings(
        LatencySettings(budget_s=args.budget_s), threads=args.threads, idle_s=args.idle_s
    )
    load_before = os.getloadavg()
    results: list[RuntimeResult] = []
    started = time.perf_counter()
    for _ in tqdm(range(args.repeats), desc="isolated measurements"):
        results.append(measure_runtime_isolated(model, sample, settings))
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()

    facts = hardware_facts()
    print(
        f"\n{args.arch} on one {args.dataset} sample {tuple(sample.shape)}, {macs / 1e9:.3f} GMACs, "
        f"{args.threads} thread(s), {args.repeats} isolated runs in {seconds:.0f} s"
    )
    print(
        f"machine: {facts.cpu}, {facts.cores_logical} logical CPUs, {facts.ram_gb} GB; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"CPU use of the machine now {psutil.cpu_percent(interval=0.5):.0f} %"
    )
    print(f"energy meter: {results[0].tags.get(keys.TAG_ENERGY_METER, 'none')}")
    print(f"latency target met: {[r.tags.get(keys.TAG_LATENCY_TARGET_MET) for r in results]}\n")
    print("| run | " + " | ".join(name for name, _, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for i, result in enumerate(results, start=1):
        print(f"| {i} | " + " | ".join(_cell(result, key, form) for _, key, form in COLUMNS) + " |")
    print("\n| figure | median over runs | (max - min) / median | CV |")
    print("|---|---|---|---|")
    print(_spread_line("median latency (ms)", results, keys.LATENCY_MS))
    print(_spread_line("energy per sample (J)", results, keys.ENERGY_PER_SAMPLE))
    print(_spread_line("power above idle (W)", results, keys.POWER))


if __name__ == "__main__":
    main()
