"""Benchmark: one model in several deployment runtimes (the NetZIP paper's case study 2), CPU, batch 1.

Two parts, each timed side by side in this one process (``--rounds`` rounds, every model timed once
per round in a rotated order with :func:`netzip_mlflow.evaluation.latency.measure_latency`; a
model's latency is the median of its per-round medians; speedups are against torch fp32 of the same
part):

* ``resnet18-224``: torchvision's ResNet18 (1000 classes, seeded random weights, nothing
  downloaded) at 3x224x224 in torch fp32, torch ``ptq``, ONNX Runtime fp32/int8 and OpenVINO
  fp32/int8, plus ``prune_structured`` at 75 % of the parameters with ``round_to`` 1 (any channel
  count) and 8 in torch, ONNX Runtime and OpenVINO, and that pruned model quantized to int8 in each
  runtime. Calibration on random tensors (random weights: no meaningful data at this size; latency
  does not depend on the values); accuracy is not meaningful and not shown.
* ``mnist``: the built-in MNIST ResNet18 (4,000 train / 1,000 test images, trained ``--epochs``
  epochs as in ``recipes/quickstart.yaml``), the same six models plus the pipeline prune_structured
  75 % -> finetune 1 epoch -> int8 in each runtime; accuracy is top-1 over the 1,000 test images
  through each runtime's own session; calibration on 8 training batches.

Threads: torch ``set_num_threads``, ONNX Runtime ``intra_op_num_threads``, OpenVINO
``INFERENCE_NUM_THREADS``, all ``--threads``. Disk MB: ``torch.save`` of the ``state_dict`` for
torch models, the files that ship for runtime models (10^6 bytes). Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python -m bench.runtime_bench --part resnet18-224 --part mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.evaluation.accuracy import predict
from netzip_mlflow.evaluation.deployed import DeployedModel
from netzip_mlflow.evaluation.latency import LatencySettings, measure_latency
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.evaluation.size import model_size
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import build_model

RUNTIMES: dict[str, tuple[str, dict[str, object]]] = {
    "torch ptq (int8)": ("ptq", {}),
    "ORT fp32": ("onnx", {}),
    "ORT int8": ("onnx", {"quantize": "int8"}),
    "OpenVINO fp32": ("openvino", {}),
    "OpenVINO int8": ("openvino", {"quantize": "int8"}),
}
STRUCTURED = {"amount": 0.75, "target": "params", "importance": "l1"}


def _compress(model: nn.Module, technique: str | list, params: dict | None, data: DataLoader, label: str) -> nn.Module:
    started = time.perf_counter()
    result = compress(model, technique, params, data=data, progress=False)
    print(f"  {label}: {time.perf_counter() - started:.1f} s")
    return result.model


def _suite(base: nn.Module, data: DataLoader, pipeline_head: list[dict], pruned_label: str) -> dict[str, nn.Module]:
    """torch fp32 + every runtime of ``base``, then of the pruned model (``pipeline_head`` steps)."""
    models = {"torch fp32": base}
    for label, (technique, params) in RUNTIMES.items():
        models[label] = _compress(base, technique, {**params, "calibration_batches": 8}, data, label)
    pruned = _compress(base, pipeline_head, None, data, pruned_label)
    models[f"{pruned_label} torch fp32"] = pruned
    for label, (technique, params) in RUNTIMES.items():
        models[f"{pruned_label} {label}"] = _compress(
            pruned, technique, {**params, "calibration_batches": 8}, data, f"{pruned_label} {label}"
        )
    return models


def _timer(model: nn.Module, sample: torch.Tensor) -> Callable[[], object]:
    if isinstance(model, DeployedModel):
        session, array = model.session(), sample.numpy()
        return lambda: session.run(array)

    def call() -> object:
        with torch.inference_mode():
            return model(sample)

    return call


def _time(models: dict[str, nn.Module], sample: torch.Tensor, threads: int, rounds: int, budget_s: float) -> dict[str, list[float]]:
    for model in models.values():
        if isinstance(model, DeployedModel):
            model.set_threads(threads)
    settings = LatencySettings(warmup_s=0.5, budget_s=budget_s, target_ci_rel=0.01)
    medians: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for index in tqdm(range(rounds), desc="timing rounds"):
        order = names[index % len(names):] + names[: index % len(names)]
        for name in order:
            medians[name].append(measure_latency(_timer(models[name], sample), settings).median_ms)
    return medians


def _rows(models: dict[str, nn.Module], medians: dict[str, list[float]], sample: torch.Tensor,
          test: DataLoader | None) -> list[dict[str, object]]:
    base_ms = statistics.median(medians["torch fp32"])
    rows = []
    for name, model in models.items():
        deployed = isinstance(model, DeployedModel)
        size = model.size_report() if deployed else model_size(model)
        macs = (model.ops_report() if deployed else count_ops(model, sample)).macs
        latency = statistics.median(medians[name])
        row: dict[str, object] = {
            "model": name, "median ms": latency, "speedup vs torch fp32": base_ms / latency,
            "GMACs": macs / 1e9, "disk MB": size.disk_mb,
        }
        if test is not None:
            pred = predict(model, test)
            row["top-1"] = float((pred.top1 == pred.labels).mean())
        if deployed:
            row["threads (read back)"] = model.session_threads()
        row["round medians ms"] = ", ".join(f"{m:.2f}" for m in medians[name])
        rows.append(row)
    return rows


def resnet18_224(threads: int, rounds: int, budget_s: float, seed: int) -> list[dict[str, object]]:
    """Part ``resnet18-224`` (see the module docstring)."""
    torch.manual_seed(seed)
    base = torchvision.models.resnet18(num_classes=1000).eval()
    generator = torch.Generator().manual_seed(seed)
    data = DataLoader(TensorDataset(torch.randn(32, 3, 224, 224, generator=generator),
                                    torch.randint(0, 1000, (32,), generator=generator)), batch_size=4)
    models = {}
    for round_to in (1, 8):
        label = f"structured75 r{round_to}"
        pruned = _compress(base, "prune_structured", {**STRUCTURED, "round_to": round_to}, data, label)
        models[f"{label} torch fp32"] = pruned
        for runtime in ("ORT fp32", "OpenVINO fp32"):
            technique, params = RUNTIMES[runtime]
            models[f"{label} {runtime}"] = _compress(pruned, technique, params, data, f"{label} {runtime}")
        if round_to == 8:
            for runtime in ("torch ptq (int8)", "ORT int8", "OpenVINO int8"):
                technique, params = RUNTIMES[runtime]
                models[f"{label} {runtime}"] = _compress(
                    pruned, technique, {**params, "calibration_batches": 8}, data, f"{label} {runtime}")
    suite = {"torch fp32": base}
    for label, (technique, params) in RUNTIMES.items():
        suite[label] = _compress(base, technique, {**params, "calibration_batches": 8}, data, label)
    suite.update(models)
    torch.set_num_threads(threads)
    sample = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
    return _rows(suite, _time(suite, sample, threads, rounds, budget_s), sample, None)


def mnist(threads: int, rounds: int, budget_s: float, seed: int, epochs: int) -> list[dict[str, object]]:
    """Part ``mnist`` (see the module docstring)."""
    split = load_builtin("mnist")
    train_data = DataLoader(split.train, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(seed))
    test = DataLoader(split.test, batch_size=256)
    base = build_model("resnet18", len(split.classes), split.input_shape, seed=seed)
    started = time.perf_counter()
    train(base, train_data, epochs, 0.05, progress=False)
    print(f"  baseline trained in {time.perf_counter() - started:.1f} s")
    base.eval()
    head = [{"technique": "prune_structured", "params": STRUCTURED},
            {"technique": "finetune", "params": {"epochs": 1}}]
    models = _suite(base, train_data, head, "structured75+ft")
    torch.set_num_threads(threads)
    sample = next(iter(test))[0][:1].clone()
    return _rows(models, _time(models, sample, threads, rounds, budget_s), sample, test)


def markdown(rows: list[dict[str, object]]) -> str:
    """The result table in Markdown."""
    header = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.get(k, "") for k in header]
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=["resnet18-224", "mnist"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=3.0, help="timing budget per model per round")
    parser.add_argument("--epochs", type=int, default=2, help="MNIST baseline training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    out: dict[str, object] = {}
    for part in args.part or ["resnet18-224", "mnist"]:
        load_before = os.getloadavg()[0]
        if part == "resnet18-224":
            rows = resnet18_224(args.threads, args.rounds, args.budget_s, args.seed)
        else:
            rows = mnist(args.threads, args.rounds, args.budget_s, args.seed, args.epochs)
        load_after = os.getloadavg()[0]
        print(f"\n## {part}: torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
              f"threads={args.threads}, rounds={args.rounds}, load average (1 min) before "
              f"{load_before:.2f}, after {load_after:.2f}\n")
        print(markdown(rows), flush=True)
        out[part] = {"rows": rows, "load_before": load_before, "load_after": load_after}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
