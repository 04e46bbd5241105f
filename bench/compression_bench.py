"""Benchmark: what each compression technique really buys on ResNet18, 224x224, batch 1, CPU.

One process builds torchvision's ResNet18 (1000 classes, seeded random weights: nothing is
downloaded), compresses it with ``ptq`` (static int8, x86 backend), ``prune_structured`` (75% of the
parameters, L1 channel importance, channels physically removed) and ``prune_unstructured`` (75% of
the Conv/Linear weights, L1, zeros kept in dense tensors), then times the four models side by side:
``--rounds`` rounds, each timing every model once in a rotated order with the adaptive protocol of
:func:`netzip_mlflow.evaluation.latency.measure_latency`; a model's latency is the median of its
per-round medians. MACs come from :func:`netzip_mlflow.evaluation.ops.count_ops`, parameters and
disk MB (``torch.save`` of the ``state_dict``, MB = 10^6 bytes) from
:func:`netzip_mlflow.evaluation.size.model_size`.

Calibration uses random tensors: with random weights there is no meaningful real data at this size,
and latency does not depend on the values. Run from the repository root:

    .venv/bin/python -m bench.compression_bench                  # 1 thread, 3 rounds
    .venv/bin/python -m bench.compression_bench --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.evaluation.latency import LatencySettings, measure_latency
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.evaluation.size import model_size

RECIPES: dict[str, tuple[str, dict[str, object]]] = {
    "ptq (int8, x86)": ("ptq", {"calibration_batches": 4}),
    "prune_structured 75% params": (
        "prune_structured", {"amount": 0.75, "target": "params", "importance": "l1"}
    ),
    "prune_unstructured 75%": ("prune_unstructured", {"amount": 0.75, "importance": "l1"}),
}


def _models(seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    baseline = torchvision.models.resnet18(num_classes=1000).eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(16, 3, 224, 224, generator=generator)
    targets = torch.randint(0, 1000, (16,), generator=generator)
    data = DataLoader(TensorDataset(inputs, targets), batch_size=4)
    models = {"baseline (fp32)": baseline}
    for label, (technique, params) in tqdm(RECIPES.items(), desc="compressing"):
        started = time.perf_counter()
        result = compress(baseline, technique, params, data=data, progress=False)
        print(f"  {label}: compressed in {time.perf_counter() - started:.1f} s; {result.info}")
        models[label] = result.model
    return models


def _timer(model: nn.Module, sample: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return model(sample)

    return call


def run(threads: int, rounds: int, budget_s: float, seed: int) -> list[dict[str, object]]:
    """Compress, count and time; one row per model (see the module docstring)."""
    torch.set_num_threads(threads)
    models = _models(seed)
    sample = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
    settings = LatencySettings(warmup_s=1.0, budget_s=budget_s, target_ci_rel=0.01)
    medians: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for round_index in tqdm(range(rounds), desc="timing rounds"):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            result = measure_latency(_timer(models[name], sample), settings)
            medians[name].append(result.median_ms)
    base_ms = statistics.median(medians[names[0]])
    rows = []
    for name, model in models.items():
        size = model_size(model)
        latency = statistics.median(medians[name])
        rows.append({
            "model": name,
            "median latency ms": latency,
            "speedup": base_ms / latency,
            "GMACs": count_ops(model, sample).macs / 1e9,
            "params M": size.params / 1e6,
            "disk MB": size.disk_mb,
            "round medians ms": ", ".join(f"{m:.1f}" for m in medians[name]),
        })
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    """The result table in Markdown."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (rotated order)")
    parser.add_argument("--budget-s", type=float, default=8.0,
                        help="timing budget per model per round, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = run(args.threads, args.rounds, args.budget_s, args.seed)
    load_after = os.getloadavg()
    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, threads={args.threads}, rounds={args.rounds}, "
          f"quantized engine {torch.backends.quantized.engine}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
